"""Attention weights over n candidates: softmax and three biologically oriented replacements for it.

Every mechanism maps *logits* u (the scaled scores, last axis = the n candidates, any leading axes) and an optional
boolean mask to non-negative weights over the candidates, so each is a drop-in replacement for the softmax weights
inside any attention neuron of this package (``mechanism=`` and ``options=`` of the neuron factories).

| Mechanism | Weights after its parameter grows | Differentiable by |
|---|---|---|
| `softmax` | softmax(u), max-subtracted | exact gradient |
| `race` (gamma-cycle race) | win counts / K, unbiased for softmax(u); error ~ K^(-1/2) | expectation (straight-through) or a Gumbel relaxation |
| `oscillator` (phase synchrony) | softmax(u) in the near-antiphase regime; uniform over {u > 0} when it synchronises | unrolled relaxation |
| `rate` (rate competition) | softmax(u), geometrically in the steps S | unrolled relaxation |

Each mechanism is a module here (`softmax`, `race`, `oscillator`, `rate`) holding its weight function, whose
docstring has the formulas, and its `Mechanism` class, whose fields are its options. `base` has the protocol and
the registry: other packages add mechanisms with `register_mechanism` (see `attention.mechanisms.base`).
`docs/bridge.md` measures how close each comes to softmax.
"""

from .base import COUNT as COUNT
from .base import FRACTION as FRACTION
from .base import POSITIVE as POSITIVE
from .base import Check as Check
from .base import Mechanism as Mechanism
from .base import choice as choice
from .base import mechanism as mechanism
from .base import option as option
from .base import register_mechanism as register_mechanism
from .base import registered_mechanisms as registered_mechanisms
from .base import softmax_weights as softmax_weights
from .oscillator import Oscillator as Oscillator
from .oscillator import oscillator_weights as oscillator_weights
from .race import Race as Race
from .race import race_weights as race_weights
from .rate import Rate as Rate
from .rate import rate_weights as rate_weights
from .softmax import Softmax as Softmax

MECHANISMS: tuple[str, ...] = ("softmax", "race", "oscillator", "rate")
"""The names of the built-in mechanisms (`registered_mechanisms` lists every registered one)."""
