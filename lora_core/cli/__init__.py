"""`python -m lora_core`: the command line. `args` reads and checks every flag without torch (so a bad value is
refused before torch loads); `main` picks the command; `run_command`, `sweep_command` and `inspect_command`
do the work. Kept empty of imports: importing `lora_core.cli.args` must not load the commands."""
