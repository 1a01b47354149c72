"""Sparsification: pruning and regrowing links of a trained network, and the schedules that shrink it."""

from .core import SearchConfig as SearchConfig
from .core import SparsifyConfig as SparsifyConfig
from .core import SparsifyReport as SparsifyReport
from .core import SwapConfig as SwapConfig
from .core import link_names as link_names
from .core import links_mask as links_mask
from .core import live_links as live_links
from .core import prune as prune
from .core import regrow as regrow
from .core import regrow_gains as regrow_gains
from .core import search_sparsify as search_sparsify
from .core import smallest_links as smallest_links
from .core import sparsify as sparsify
from .core import swap_sparsify as swap_sparsify
