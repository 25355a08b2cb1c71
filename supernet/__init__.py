"""Elastic weight-sharing supernet: search spaces, elastic layers, export, cost, training."""

from .checkpoint import load_checkpoint, save_checkpoint
from .converters import convert, peer_arch
from .nn.child_file import load_child, read_child
from .nn.model import ElasticSupernet
from .spaces.cost import macs, params
from .spaces.space import Arch, SearchSpace, StageArch, load_space
from .training.calibrate import calibrated_child

__all__ = ["Arch", "ElasticSupernet", "SearchSpace", "StageArch", "calibrated_child",
           "convert", "load_checkpoint", "load_child", "load_space", "macs", "params", "peer_arch",
           "read_child", "save_checkpoint"]
