"""Export stage: merge the adapter, write safetensors and GGUF (f16, q8_0), check every file reloads
and decodes like the trained model (parity), and write the model card."""
from .build import FORMATS, ExportManifest, ExportSpec, export_model

__all__ = ["FORMATS", "ExportManifest", "ExportSpec", "export_model"]
