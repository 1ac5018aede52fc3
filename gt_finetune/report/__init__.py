"""A job as a self-contained HTML page (`gt-finetune report`), and two jobs compared
(`gt-finetune compare`)."""
from .compare import compare_jobs, render_comparison
from .page import write_job_report

__all__ = ["compare_jobs", "render_comparison", "write_job_report"]
