"""gt-finetune: fine-tune a local model on a Gas Town's own history, one `ft-` bead per job."""
__version__ = "0.1.0"

__all__ = ["__version__"]
