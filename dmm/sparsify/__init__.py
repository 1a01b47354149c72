"""Automated sparsification: prune links while keeping the optimizer state of the survivors, on adaptive schedules
with backtracking.

`prune(trainer, state, links)` removes links from a `TrainState`: their weights become 0, their mask entries False
(so they stay 0), and every parameter-shaped leaf of the optimizer state (Adam's first and second moments, say) is
zeroed at the same entries, while the survivors' entries, the step count and everything else are kept: training
continues as if the cut links had never been there, without the restart a fresh optimizer would cause.

`sparsify(trainer, state, config, ...)` runs the greedy schedule:

1. choose the links to cut: the `cut` smallest by abs(w) (criterion "weight", the author's), or the `cut` whose
   removal alone costs the least loss among the `candidates` smallest (criterion "loss", evaluated in one vmapped
   pass); protected links are never chosen;
2. prune them and train `recover_steps` steps, and more (up to `max_recover_steps`) while the loss is above the
   tolerance but still falling by at least the fraction `improve` per round;
3. if the loss is then at most `tolerance`, accept: the state becomes the new "last good" state (saved to
   `checkpoint` if given) and the cut size grows (× `grow`, at most `max_cut`);
4. otherwise back off: restore the last good state and halve the cut size; when even a single link cannot be cut,
   that link is *critical* and is skipped until the next accepted cut changes the network;
5. stop when every remaining link is protected or critical, at `min_links` links, or when the step budget
   `max_steps` runs out; optionally polish with `final_steps` more steps.

Every attempt is logged (the links cut with their weights, the loss before the cut, right after it and after
recovery, the recovery steps, accepted or not) in the returned report and, if `log` is given, as JSONL lines.

`search_sparsify(trainer, state, SearchConfig(...))` is the parallel variant: each round ranks the live links by
the loss of the network without each one, recovers several trial cuts at once (`Trainer.fit_many`: a big group,
smaller ones, alternative single links) and keeps the acceptable trial that cut most. `swap_sparsify` swaps a link
for a regrown one at its Gauss-Newton optimum and cuts what became free.

Modules: `links` (link addressing), `surgery` (prune, regrow), `criteria` (smallest links, single-cut losses,
regrow gains), `driver` (the one loop every schedule runs in) and `schedules` (greedy, search and swap).
"""

from .criteria import cut_losses as cut_losses
from .criteria import least_damage as least_damage
from .criteria import regrow_gains as regrow_gains
from .criteria import single_cut_losses as single_cut_losses
from .criteria import smallest_links as smallest_links
from .driver import Attempt as Attempt
from .driver import Policy as Policy
from .driver import Session as Session
from .driver import SparsifyReport as SparsifyReport
from .driver import drive as drive
from .links import Link as Link
from .links import link_names as link_names
from .links import links_mask as links_mask
from .links import live_links as live_links
from .schedules import SearchConfig as SearchConfig
from .schedules import SparsifyConfig as SparsifyConfig
from .schedules import SwapConfig as SwapConfig
from .schedules import search_sparsify as search_sparsify
from .schedules import sparsify as sparsify
from .schedules import swap_sparsify as swap_sparsify
from .surgery import prune as prune
from .surgery import regrow as regrow
