"""Bias probes and responsible use (notebook 08): likelihood probes for causal LMs, association tests for
encoders, counterfactual augmentation, memorisation and canaries.

- `likelihood`: sentence log-likelihood (summed, per token), the CrowS-Pairs paired probe, bootstrap intervals
- `templates`: "The nurse said that" -> P(he) vs P(she) over WinoBias occupations; WinoBias pro/anti gap
- `weat`: WEAT effect size and permutation p-value for any embedding function; SEAT for sentence encoders
- `counterfactual`: gendered-word swapping (word boundaries, case, her/his ambiguities) and two-sided CDA
- `memorisation`: exact continuation rates; canaries and their exposure (Carlini et al. 2019)
- `experiment`: the controlled experiment (a stated skew mixed into a corpus; skewed, augmented and even-skew
  arms, several seeds each, t intervals) of notebook 08 and benchmarks/bias.py

These probes use CrowS-Pairs, WinoBias and the WEAT lists, which hold offensive stereotypes by
design: for evaluation only, never for training.
"""

from .counterfactual import GENDER_PAIRS, augment, swap_gendered
from .likelihood import (
                         Pair,
                         PairedResult,
                         SentenceScore,
                         bootstrap_ci,
                         load_pairs,
                         paired_preference,
                         score_sentences,
                         token_log_probs,
)
from .memorisation import (
                         Canary,
                         canary_exposure,
                         exact_continuation_rate,
                         exposure_from_rank,
                         insert_canaries,
                         make_canaries,
                         rank_of,
)
from .templates import (
                         check_template,
                         load_occupations,
                         load_winobias_pairs,
                         pronoun_probe,
                         winobias_gap,
)
from .weat import (
                         CALISKAN_GLOVE,
                         SEAT_TEMPLATES,
                         WEAT_TESTS,
                         effect_size,
                         load_weat,
                         p_value,
                         seat,
                         weat,
                         weat_test,
)

__all__ = [
                         "CALISKAN_GLOVE",
                         "GENDER_PAIRS",
                         "SEAT_TEMPLATES",
                         "WEAT_TESTS",
                         "Canary",
                         "Pair",
                         "PairedResult",
                         "SentenceScore",
                         "augment",
                         "bootstrap_ci",
                         "canary_exposure",
                         "check_template",
                         "effect_size",
                         "exact_continuation_rate",
                         "exposure_from_rank",
                         "insert_canaries",
                         "load_occupations",
                         "load_pairs",
                         "load_weat",
                         "load_winobias_pairs",
                         "make_canaries",
                         "p_value",
                         "paired_preference",
                         "pronoun_probe",
                         "rank_of",
                         "score_sentences",
                         "seat",
                         "swap_gendered",
                         "token_log_probs",
                         "weat",
                         "weat_test",
                         "winobias_gap",
]
