"""One module per eval family; an eval is data + sampling + scoring."""

from aftertune.evals.freeform import FreeformResult, FreeformSettings, run_freeform

__all__ = ["FreeformResult", "FreeformSettings", "run_freeform"]
