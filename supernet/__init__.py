"""Elastic weight-sharing supernet: search spaces, elastic layers, export, cost, training."""

from .calibrate import calibrated_child
from .checkpoint import load_checkpoint, save_checkpoint
from .child_file import load_child, read_child
from .converters import convert, peer_arch
from .cost import macs, params
from .model import ElasticSupernet
from .space import Arch, SearchSpace, StageArch, load_space

__all__ = ["Arch", "ElasticSupernet", "SearchSpace", "StageArch", "calibrated_child",
           "convert", "load_checkpoint", "load_child", "load_space", "macs", "params", "peer_arch",
           "read_child", "save_checkpoint"]
