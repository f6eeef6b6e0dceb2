"""The adapters: LoRA's layer, DoRA's, their inits, attaching them to a model and merging them, PEFT's format."""
