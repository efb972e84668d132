"""ControlNet, T2I-Adapter and Control-LoRA: the models (cldm, t2i), reading their files (files),
building them (loading) and evaluating them beside the U-Net while sampling (runtime)."""
from .files import ControlError, read_control
from .loading import load_control
from .runtime import Control, ControlModel, share_controls

__all__ = ["Control", "ControlError", "ControlModel", "load_control", "read_control", "share_controls"]
