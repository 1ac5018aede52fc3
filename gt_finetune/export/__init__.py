"""Export stage (merge, safetensors, GGUF, model card): arrives with issue 8."""
