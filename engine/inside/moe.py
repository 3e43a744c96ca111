"""A mixture of experts carved out of SmolLM2's dense FFN: what sparsity costs a model never trained for it.

SmolLM2 is dense: every token runs all 1,536 SwiGLU neurons of every layer. Its FFN output is a sum over
neurons, down_proj[:, n] * product[n], so any split of the neurons into groups splits the output exactly
into the groups' contributions. Here each layer's neurons are split into 8 "experts" of 192, and per token
only the k experts a router picks are kept (the others' products are zeroed before down_proj). With k = 8
nothing is dropped and the layer is the dense one, bit for bit.

This is a simulation over a dense model (in the spirit of MoEfication, Zhang et al. 2022), not a trained
MoE: the experts were never trained to work alone and no router was trained with them. The router here
cheats: it computes every expert and keeps the k whose outputs (down_proj of their products) are largest,
which a real router, a small learned layer that decides before any expert runs, cannot do. A random
router, keeping k experts at random, is the contrast: routing matters.

Grouping: "clustered" puts neurons whose gate weight vectors point the same way (neurons that respond to
similar inputs) in the same expert, by balanced spherical k-means (MoEfication's parameter clustering);
"index" takes neurons 0-191, 192-383, ... (an arbitrary split, since neuron order means nothing).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from engine.runtime.gate import model_work
from engine.model.live_model import LiveModel
from engine.model.perplexity import perplexity
from engine.model.traced import Interventions, trace

EXPERTS = 8
GROUPINGS = ("clustered", "index")
ROUTERS = ("largest", "random")
KMEANS_ITERATIONS = 12
RANDOM_ROUTER_SEED = 0


# ----------------------------------------------------------------------------------------------------------
# Splitting the neurons into experts
# ----------------------------------------------------------------------------------------------------------

def balanced_assignment(similarity: np.ndarray, capacity: int) -> np.ndarray:
    """Each row (neuron) to one column (expert), every column taking exactly `capacity` rows.

    Greedy over all (neuron, expert) pairs from the most similar down: a neuron goes to its best expert that
    still has room. Not the optimum of the assignment problem, but close, and a few milliseconds for 1,536.
    """
    rows, cols = similarity.shape
    if rows != cols * capacity:
        raise ValueError(f"{rows} rows cannot fill {cols} groups of {capacity}")
    order = np.argsort(-similarity, axis=None, kind="stable").tolist()
    assigned, load, left = [-1] * rows, [0] * cols, rows
    for flat in order:
        row, col = divmod(flat, cols)
        if assigned[row] < 0 and load[col] < capacity:
            assigned[row], load[col] = col, load[col] + 1
            left -= 1
            if not left:
                break
    return np.array(assigned)


def balanced_kmeans(vectors: np.ndarray, groups: int, iterations: int = KMEANS_ITERATIONS,
                    seed: int = 0) -> np.ndarray:
    """Spherical k-means (cosine similarity) into `groups` equal-sized groups: a group label per row.

    The centroids move with ordinary (unbalanced) k-means steps, which are cheap; the final labels come from
    one balanced assignment, so every group ends with exactly len(vectors) / groups members. The products run
    in torch, whose threads the CPU gate sizes (numpy's BLAS would start threads of its own on a busy server).
    """
    x = torch.nn.functional.normalize(torch.as_tensor(np.asarray(vectors, dtype=np.float64)), dim=1)
    # Farthest-first start: each new centroid is the row least similar to those chosen so far, so two
    # centroids rarely start in one cluster (a plain random start can, and k-means then keeps them there).
    chosen = [int(np.random.default_rng(seed).integers(len(x)))]
    for _ in range(groups - 1):
        chosen.append(int((x @ x[chosen].T).max(1).values.argmin()))
    centroids = x[chosen]
    for _ in range(iterations):
        labels = (x @ centroids.T).argmax(1)
        moved = torch.stack([x[labels == g].mean(0) if bool((labels == g).any()) else centroids[g]
                             for g in range(groups)])
        moved = torch.nn.functional.normalize(moved, dim=1)
        if torch.allclose(moved, centroids):
            break
        centroids = moved
    return balanced_assignment((x @ centroids.T).numpy(), len(x) // groups)


_splits: dict[tuple[int, int, str], np.ndarray] = {}
_splits_lock = threading.Lock()


def expert_neurons(lm: LiveModel, layer: int, grouping: str = "clustered") -> np.ndarray:
    """[8, 192] neuron indices of each expert in `layer` (sorted within an expert), computed once per process.

    The split depends only on the weights, so every reader and every text shares it.
    """
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    key = (id(lm), int(layer), grouping)
    with _splits_lock:
        if key in _splits:
            return _splits[key]
    ffn = lm.card.ffn_dim
    if ffn % EXPERTS:
        raise ValueError(f"{ffn} neurons do not split into {EXPERTS} equal experts")
    if grouping == "index":
        split = np.arange(ffn).reshape(EXPERTS, ffn // EXPERTS)
    else:
        gate = lm.model.model.layers[layer].mlp.gate_proj.weight.detach().numpy().astype(np.float64)
        labels = balanced_kmeans(gate, EXPERTS)
        split = np.stack([np.flatnonzero(labels == e) for e in range(EXPERTS)])
    split.setflags(write=False)
    with _splits_lock:
        _splits.setdefault(key, split)
        return _splits[key]


# ----------------------------------------------------------------------------------------------------------
# Experts' outputs and the routers
# ----------------------------------------------------------------------------------------------------------

def expert_outputs(lm: LiveModel, layer: int, product: torch.Tensor, neurons: np.ndarray) -> torch.Tensor:
    """[T, 8, d_model]: what each expert alone adds to the residual stream (its slice of down_proj).

    Summed over the experts this is the dense FFN output, up to float rounding (a different order of sums).
    """
    index = torch.tensor(neurons)                                  # [8, 192]; a copy: `neurons` is read-only
    down = lm.model.model.layers[layer].mlp.down_proj.weight        # [d_model, ffn]
    return torch.einsum("tef,def->ted", product[:, index], down[:, index])


def router_scores(lm: LiveModel, layer: int, product: torch.Tensor, neurons: np.ndarray, router: str) -> torch.Tensor:
    """[T, 8] scores, higher = kept first. "largest": the norm of each expert's output; "random": uniform noise
    from a generator seeded by the layer (so a pass is reproducible and the same for every reader)."""
    if router == "largest":
        return expert_outputs(lm, layer, product, neurons).norm(dim=-1)
    if router == "random":
        generator = torch.Generator().manual_seed(RANDOM_ROUTER_SEED * 1000 + layer)
        return torch.rand(product.shape[0], neurons.shape[0], generator=generator)
    raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[T, 8] bool: each token's k highest-scoring experts (ties: the lower expert index)."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    return keep.scatter_(1, scores.topk(k, dim=1, sorted=False).indices, True)


@dataclass(frozen=True)
class ExpertRouting:
    """The traced pass's ffn_product_transform for a simulated MoE: in `layers`, each token keeps only the
    products of its top-k experts.

    Compared and hashed by its settings (not by the model), so two equal settings are one cache entry in
    engine.model.perplexity, whichever session built them.
    """
    layers: frozenset[int]
    k: int
    grouping: str = "clustered"
    router: str = "largest"
    lm: LiveModel | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if not 1 <= self.k <= EXPERTS:
            raise ValueError(f"k must be 1..{EXPERTS}, got {self.k!r}")
        if self.grouping not in GROUPINGS or self.router not in ROUTERS:
            raise ValueError(f"unknown grouping {self.grouping!r} or router {self.router!r}")

    def __call__(self, layer: int, product: torch.Tensor) -> torch.Tensor:
        if layer not in self.layers or self.k == EXPERTS:
            return product
        neurons = expert_neurons(self.lm, layer, self.grouping)
        keep = top_k_mask(router_scores(self.lm, layer, product, neurons, self.router), self.k)   # [T, 8]
        per_neuron = torch.empty_like(product, dtype=torch.bool)
        per_neuron[:, torch.tensor(neurons).reshape(-1)] = keep.repeat_interleave(neurons.shape[1], dim=1)
        return product * per_neuron


def moe_interventions(lm: LiveModel, layers: range | frozenset[int], k: int, grouping: str = "clustered",
                      router: str = "largest") -> Interventions:
    """Interventions for the traced pass (and engine.model.perplexity) with these layers made MoE; k = 8 is dense."""
    if k == EXPERTS:
        return Interventions()
    return Interventions(ffn_product_transform=ExpertRouting(frozenset(layers), k, grouping, router, lm))


# ----------------------------------------------------------------------------------------------------------
# What the router did in one layer, for the page
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LayerRouting:
    """One layer's routing of a text: who was picked, by how much, and the exactness check at k = 8."""
    layer: int
    k: int
    neurons: np.ndarray          # [8, 192] neuron indices per expert
    output_norms: np.ndarray     # [T, 8] the norm of each expert's output: the "largest" router's scores
    chosen: np.ndarray           # [T, 8] bool, the top-k per token
    max_sum_error: float         # max |sum of the 8 experts' outputs - the dense FFN output|
    dense_scale: float           # max |dense FFN output|, to read the error against

    @property
    def shares(self) -> np.ndarray:
        """[T, 8] each expert's output norm as a share of the token's total."""
        return self.output_norms / self.output_norms.sum(1, keepdims=True)

    @property
    def load(self) -> np.ndarray:
        """[8] fraction of tokens that picked each expert (sums to k)."""
        return self.chosen.mean(0)

    @property
    def kept_share(self) -> np.ndarray:
        """[T] share of the summed output norms that the kept experts carry."""
        return (self.shares * self.chosen).sum(1)


def layer_routing(lm: LiveModel, ids: list[int], moe_layers: range | frozenset[int], k: int, layer: int,
                  grouping: str = "clustered") -> LayerRouting:
    """Route `layer` as the MoE pass does: the layers before it are MoE too (those in `moe_layers`), so its
    input is the one the sparse model really sees; the layer's own product is recorded before routing."""
    earlier = frozenset(l for l in moe_layers if l < layer)
    iv = moe_interventions(lm, earlier, k, grouping) if earlier else Interventions()
    tp = trace(lm, ids, record={"product", "down"}, layers=[layer], interventions=iv)
    neurons = expert_neurons(lm, layer, grouping)
    with model_work():
        product = torch.from_numpy(np.array(tp.at("product", layer)))
        outputs = expert_outputs(lm, layer, product, neurons)                 # [T, 8, d_model]
        norms = outputs.norm(dim=-1)
        chosen = top_k_mask(norms, k)
        dense = torch.from_numpy(np.array(tp.at("down", layer)))
        error = float((outputs.sum(1) - dense).abs().max())
    return LayerRouting(layer=layer, k=k, neurons=neurons, output_norms=norms.numpy(), chosen=chosen.numpy(),
                        max_sum_error=error, dense_scale=float(dense.abs().max()))


# ----------------------------------------------------------------------------------------------------------
# Parameters: total against active, for the simulated MoE and for published MoE configurations
# ----------------------------------------------------------------------------------------------------------

def ffn_parameters(d_model: int, ffn: int) -> int:
    """A SwiGLU FFN's weights: gate, up and down projections."""
    return 3 * d_model * ffn


def active_parameters(total: int, d_model: int, ffn: int, moe_layers: int, k: int, experts: int = EXPERTS) -> int:
    """Parameters a token uses when `moe_layers` FFNs keep k of their `experts` equal slices."""
    return total - moe_layers * ffn_parameters(d_model, ffn) * (experts - k) // experts


@dataclass(frozen=True)
class MoESpec:
    """The config.json numbers that decide a LLaMA/Mixtral-style MoE's total and active parameter counts."""
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    expert_ffn: int            # intermediate_size of one expert
    experts: int               # num_local_experts
    top_k: int                 # num_experts_per_tok
    vocab: int
    published_total: str       # as the source states it
    published_active: str
    source: str

    def _counts(self) -> tuple[int, int]:
        attention = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        expert = ffn_parameters(self.hidden, self.expert_ffn)
        router = self.hidden * self.experts
        shared = attention + router + 2 * self.hidden                   # + the two RMSNorm gains
        embeddings = 2 * self.vocab * self.hidden + self.hidden         # untied in and out, + the final norm
        total = self.layers * (shared + self.experts * expert) + embeddings
        active = self.layers * (shared + self.top_k * expert) + embeddings
        return total, active

    @property
    def total_parameters(self) -> int:
        return self._counts()[0]

    @property
    def active_parameters(self) -> int:
        return self._counts()[1]


# The values of each model's config.json on the Hugging Face Hub; published figures from the named source.
PUBLISHED_MOE: tuple[MoESpec, ...] = (
    MoESpec("Mixtral 8x7B", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, expert_ffn=14336,
            experts=8, top_k=2, vocab=32000, published_total="47B", published_active="13B",
            source="mistralai/Mixtral-8x7B-v0.1 config.json; Jiang et al. 2024, Mixtral of Experts"),
    MoESpec("Mixtral 8x22B", layers=56, hidden=6144, heads=48, kv_heads=8, head_dim=128, expert_ffn=16384,
            experts=8, top_k=2, vocab=32000, published_total="141B", published_active="39B",
            source="mistral-community/Mixtral-8x22B-v0.1 config.json; Mistral AI announcement, April 2024"),
)


def parameter_share(active: int, total: int) -> float:
    return active / total if total else math.nan


# ----------------------------------------------------------------------------------------------------------
# Quality against sparsity: the perplexity for every k
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KSweep:
    """Perplexity of a text with the chosen layers made MoE, for k = 1..8, per router (NaN: not measured)."""
    ks: tuple[int, ...]
    dense: float
    by_router: dict[str, tuple[float, ...]]

    @property
    def complete(self) -> bool:
        return all(np.isfinite(v) for values in self.by_router.values() for v in values)


def sweep_k(lm: LiveModel, ids: list[int], layers: range | frozenset[int], grouping: str = "clustered",
            on_step=None, should_stop=None) -> KSweep:
    """Every k from 7 down to 1 for each router (k = 8 is the dense model for both), one traced pass each.

    `on_step(done, total)` reports progress; `should_stop()` ends the sweep early, leaving NaN where nothing
    was measured. Results go through engine.model.perplexity, so the page's own k reads them from its cache.
    """
    ks = tuple(range(1, EXPERTS + 1))
    dense = perplexity(lm, ids).perplexity
    values = {router: [math.nan] * (EXPERTS - 1) + [dense] for router in ROUTERS}
    steps = [(router, k) for router in ROUTERS for k in range(EXPERTS - 1, 0, -1)]
    for done, (router, k) in enumerate(steps):
        if should_stop is not None and should_stop():
            break
        values[router][k - 1] = perplexity(lm, ids, moe_interventions(lm, layers, k, grouping, router)).perplexity
        if on_step is not None:
            on_step(done + 1, len(steps))
    return KSweep(ks=ks, dense=dense, by_router={r: tuple(v) for r, v in values.items()})
