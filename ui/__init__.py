"""The app's glue between Streamlit and lora_core, one idea per module (see README, "The app")."""
