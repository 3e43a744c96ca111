"""The neurons of SmolLM2's feed-forward networks: what they compute on a text, what excites them across a
small corpus, what they write, what silencing them changes, and how many parameters they hold.

A neuron is one of the `intermediate_size` (1,536) channels of a layer's SwiGLU FFN. For the normalised
residual vector x at one token, channel n computes two dot products, gate_n = w_gate,n · x and
up_n = w_up,n · x, and its activation product_n = SiLU(gate_n) × up_n; it then adds product_n times column
n of W_down to the residual stream. So each neuron has a pattern it responds to (its rows of W_gate and
W_up) and a fixed direction it writes (its column of W_down): the key-value reading of Geva et al. 2021.

Every value here comes from the traced forward (engine/model/traced.py: "gate", "up", "act", "product"), from its
`ablate_neurons` intervention, or from the shared weights read without changing them. Indices are 0-based.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.runtime.gate import model_work
from engine.decoding.generation import softmax
from engine.model.live_model import LiveModel
from engine.tokens.offsets import decode_each, token_ids
from engine.model.traced import Interventions, trace

CORPUS = Path(__file__).resolve().parents[2] / "assets" / "neuron_corpus.toml"
MEASURES = ("product", "gate", "up", "act")
CORPUS_TOP_K = 12     # examples kept per neuron and sign: 1,536 x 12 x 2 small records per layer


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


# --- one text, one layer -------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FfnActivations:
    """Every neuron of one layer at every token of a text. Arrays [T, ffn_dim] float32, read-only."""
    ids: tuple[int, ...]
    layer: int
    gate: np.ndarray      # w_gate · x: the pre-activation
    up: np.ndarray        # w_up · x: the linear branch
    act: np.ndarray       # SiLU(gate)
    product: np.ndarray   # SiLU(gate) x up: what is multiplied into W_down
    final_rms: np.ndarray  # [T] the root mean square the final norm divides each position's residual by

    def measure(self, name: str) -> np.ndarray:
        if name not in MEASURES:
            raise ValueError(f"unknown measure {name!r}; one of {MEASURES}")
        return getattr(self, name)

    def ranked(self, position: int, count: int | None = None) -> np.ndarray:
        """Neuron indices at `position`, largest |product| first: the neurons that write the most."""
        order = np.argsort(-np.abs(self.product[position]), kind="stable")
        return order if count is None else order[:count]


def ffn_activations(lm: LiveModel, ids: list[int] | tuple[int, ...], layer: int) -> FfnActivations:
    """One traced pass; the last layer's output is recorded too, for the size the final norm divides by."""
    last = lm.card.layers - 1
    tp = trace(lm, list(ids), record=MEASURES + ("resid_out",), layers=sorted({layer, last}))
    resid = tp.at("resid_out", last).astype(np.float64)
    eps = lm.model.model.norm.variance_epsilon
    final_rms = np.sqrt(np.mean(resid ** 2, axis=-1) + eps).astype(np.float32)
    return FfnActivations(ids=tuple(ids), layer=layer, final_rms=_read_only(final_rms),
                          **{name: tp.at(name, layer) for name in MEASURES})


# --- what a neuron writes --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LogitEffect:
    """What one unit of a neuron's product writes, read as next-token logits (before the final norm's 1/RMS)."""
    layer: int
    neuron: int
    scores: np.ndarray          # [vocab]: E (g ⊙ w_down,n), E the tied embedding, g the final norm's gain
    promoted: tuple[int, ...]   # token ids, highest score first
    suppressed: tuple[int, ...]  # token ids, lowest score first


def logit_effect(lm: LiveModel, layer: int, neuron: int, k: int = 10) -> LogitEffect:
    """Column `neuron` of the layer's W_down read through the final norm's gain and the tied output matrix.

    This is the logit lens applied to the direction the neuron writes; it ignores every later layer. At a given
    position the final norm divides the residual by its RMS (`FfnActivations.final_rms`), so there one unit of
    product moves the logits by scores / rms: direct logit attribution, exact for the last layer up to the
    small change the neuron itself makes to that RMS. A positive product pushes the promoted tokens up; a
    negative one (SiLU dips below zero, and up has either sign) pushes the suppressed ones.
    """
    inner = lm.model.model
    with model_work():
        column = inner.layers[layer].mlp.down_proj.weight[:, neuron]
        scores = lm.model.lm_head.weight @ (inner.norm.weight * column)
        scores = scores.numpy().copy()
    order = np.argsort(-scores, kind="stable")
    return LogitEffect(layer=layer, neuron=neuron, scores=_read_only(scores),
                       promoted=tuple(int(i) for i in order[:k]), suppressed=tuple(int(i) for i in order[::-1][:k]))


# --- silencing neurons ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Ablation:
    """The next-token distribution after one position, with the model as it is and with neurons silenced."""
    position: int
    neurons: frozenset[tuple[int, int]]
    base: np.ndarray              # [vocab] float64 probabilities, intact model
    ablated: np.ndarray           # [vocab] float64 probabilities, the neurons' products set to 0 everywhere
    kl_bits: float                # KL(base || ablated) in bits: the information lost by silencing them

    @property
    def top_id(self) -> int:
        return int(np.argmax(self.base))

    @property
    def top_shift(self) -> float:
        """How much the intact model's favourite token gained (+) or lost (-), in probability."""
        return float(self.ablated[self.top_id] - self.base[self.top_id])

    @property
    def ablated_top_id(self) -> int:
        return int(np.argmax(self.ablated))


def kl_divergence_bits(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) = sum p log2(p / q) over the tokens p gives mass to."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    keep = p > 0
    return float(max(0.0, (p[keep] * (np.log2(p[keep]) - np.log2(q[keep]))).sum()))


def ablate(lm: LiveModel, ids: list[int] | tuple[int, ...], position: int,
           *neuron_sets: frozenset[tuple[int, int]]) -> tuple[Ablation, ...]:
    """Run the text intact once, then once per set with its (layer, index) neurons zeroed at every position.

    Every pass records nothing, so all take the same attention kernel and differ only by the ablation.
    """
    ids = list(ids)
    if not 0 <= position < len(ids):
        raise ValueError(f"position {position} is outside the {len(ids)} tokens")
    p = softmax(trace(lm, ids).logits[position])
    _read_only(p)
    found = []
    for neurons in neuron_sets:
        iv = Interventions(ablate_neurons=frozenset(neurons))
        q = _read_only(softmax(trace(lm, ids, interventions=iv).logits[position]))
        found.append(Ablation(position=position, neurons=frozenset(neurons), base=p, ablated=q,
                              kl_bits=kl_divergence_bits(p, q)))
    return tuple(found)


def random_neurons(layer: int, count: int, ffn_dim: int, avoid: frozenset[int], seed: int = 0) -> frozenset[int]:
    """`count` neurons of a layer drawn at random (seeded, so a link gives the same draw), none of `avoid`."""
    pool = np.setdiff1d(np.arange(ffn_dim), np.fromiter(avoid, int, len(avoid)))
    rng = np.random.default_rng([seed, layer, count])
    return frozenset(int(n) for n in rng.choice(pool, size=min(count, pool.size), replace=False))


# --- where the parameters are ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ParameterSplit:
    """Parameter counts read from the model's own tensors: one block's parts, and the whole model."""
    layer_parts: tuple[tuple[str, int], ...]   # (e.g. "mlp.gate_proj", count) in the model's order
    layers: int
    embedding: int          # the token embedding (tied: also the output matrix, counted once)
    final_norm: int
    total: int              # every distinct parameter of the model

    def _sum(self, prefix: str) -> int:
        return sum(n for name, n in self.layer_parts if name.startswith(prefix))

    @property
    def attention(self) -> int:
        return self._sum("self_attn.")

    @property
    def ffn(self) -> int:
        return self._sum("mlp.")

    @property
    def norms(self) -> int:
        return sum(n for name, n in self.layer_parts if "norm" in name)

    @property
    def per_layer(self) -> int:
        return sum(n for _, n in self.layer_parts)

    @property
    def ffn_share_of_layer(self) -> float:
        return self.ffn / self.per_layer

    @property
    def ffn_share_of_model(self) -> float:
        return self.layers * self.ffn / self.total


def parameter_split(lm: LiveModel, layer: int = 0) -> ParameterSplit:
    inner = lm.model.model
    parts = tuple((name.removesuffix(".weight"), p.numel()) for name, p in inner.layers[layer].named_parameters())
    return ParameterSplit(layer_parts=parts, layers=len(inner.layers), embedding=inner.embed_tokens.weight.numel(),
                          final_norm=inner.norm.weight.numel(),
                          total=sum(p.numel() for p in lm.model.parameters()))   # parameters() skips the tied copy


# --- what excites a neuron: a small corpus ---------------------------------------------------------------------

@dataclass(frozen=True)
class CorpusDocument:
    title: str
    source: str
    text: str


def load_corpus(path: Path = CORPUS) -> tuple[CorpusDocument, ...]:
    with path.open("rb") as f:
        docs = tomllib.load(f)["document"]
    return tuple(CorpusDocument(d["title"], d["source"], d["text"]) for d in docs)


@dataclass(frozen=True, eq=False)
class Extremes:
    """For every neuron, its CORPUS_TOP_K most extreme products in the corpus. Arrays [ffn_dim, k]."""
    values: np.ndarray   # product, most extreme first
    gate: np.ndarray
    up: np.ndarray
    doc: np.ndarray      # index into the corpus documents
    pos: np.ndarray      # token position inside that document


@dataclass(frozen=True, eq=False)
class CorpusIndex:
    """One layer's neurons read over the corpus: their strongest positive and negative activations.

    About 1,536 x 12 x 2 x 5 numbers (under 1 MB): small enough to keep one per layer in a bounded store.
    """
    layer: int
    titles: tuple[str, ...]
    tokens: tuple[tuple[str, ...], ...]   # each document's tokens, decoded one by one (for the context)
    high: Extremes
    low: Extremes
    mean: np.ndarray            # [ffn_dim] mean product over every corpus token
    positive_share: np.ndarray  # [ffn_dim] share of corpus tokens with product > 0
    documents_read: int
    documents_total: int

    @property
    def complete(self) -> bool:
        return self.documents_read == self.documents_total

    @property
    def token_count(self) -> int:
        return sum(len(t) for t in self.tokens)


@dataclass(frozen=True)
class NeuronExample:
    """One corpus token that excites a neuron, with the tokens around it."""
    value: float       # the product
    gate: float
    up: float
    document: str
    position: int
    before: str
    token: str
    after: str


def build_corpus_index(lm: LiveModel, layer: int, documents: tuple[CorpusDocument, ...] | None = None,
                       on_document: Callable[[int, int, str], None] | None = None,
                       should_stop: Callable[[], bool] | None = None) -> CorpusIndex:
    """Read every document on its own (from its first token) and keep each neuron's extremes at `layer`.

    The pass stops after `layer` (Interventions(exit_layer=layer + 1)): later layers cannot change what this
    one computes, so an early layer's index costs a fraction of a full pass. `should_stop` ends the reading
    between documents; the index then covers the documents read so far.
    """
    documents = load_corpus() if documents is None else documents
    stop_early = Interventions(exit_layer=layer + 1)
    gates, ups, products, where, decoded, titles = [], [], [], [], [], []
    for d, doc in enumerate(documents):
        if should_stop is not None and should_stop():
            break
        if on_document is not None:
            on_document(d, len(documents), doc.title)
        ids = token_ids(lm, doc.text)
        if not ids:
            continue
        tp = trace(lm, ids, record=("gate", "up", "product"), layers=[layer], interventions=stop_early)
        gates.append(tp.at("gate", layer))
        ups.append(tp.at("up", layer))
        products.append(tp.at("product", layer))
        where.append(np.stack([np.full(len(ids), len(titles)), np.arange(len(ids))], axis=1))
        decoded.append(tuple(decode_each(lm, ids)))
        titles.append(doc.title)
    if not products:
        raise ValueError("no corpus document was read")
    gate, up, product, at = (np.concatenate(a) for a in (gates, ups, products, where))   # [N, ffn_dim], [N, 2]
    k = min(CORPUS_TOP_K, product.shape[0])

    def extremes(sign: float) -> Extremes:
        # argpartition finds each neuron's k extreme rows in one sweep; only those k are then sorted
        keyed = -sign * product                                     # smallest keyed = most extreme
        rows = np.argpartition(keyed, k - 1, axis=0)[:k].T          # [ffn_dim, k]
        order = np.argsort(np.take_along_axis(keyed.T, rows, axis=1), axis=1, kind="stable")
        rows = np.take_along_axis(rows, order, axis=1)
        cols = np.arange(product.shape[1])[:, None]
        return Extremes(values=_read_only(product[rows, cols]), gate=_read_only(gate[rows, cols]),
                        up=_read_only(up[rows, cols]), doc=_read_only(at[rows, 0].astype(np.int32)),
                        pos=_read_only(at[rows, 1].astype(np.int32)))

    return CorpusIndex(layer=layer, titles=tuple(titles), tokens=tuple(decoded), high=extremes(1.0),
                       low=extremes(-1.0), mean=_read_only(product.mean(0)),
                       positive_share=_read_only((product > 0).mean(0)),
                       documents_read=len(titles), documents_total=len(documents))


def neuron_examples(index: CorpusIndex, neuron: int, k: int = 8, negative: bool = False, before: int = 8,
                    after: int = 3) -> list[NeuronExample]:
    """The corpus tokens that drive `neuron` furthest up (or down), each with a few tokens of context."""
    ex = index.low if negative else index.high
    found = []
    for j in range(min(k, ex.values.shape[1])):
        d, p = int(ex.doc[neuron, j]), int(ex.pos[neuron, j])
        toks = index.tokens[d]
        found.append(NeuronExample(value=float(ex.values[neuron, j]), gate=float(ex.gate[neuron, j]),
                                   up=float(ex.up[neuron, j]), document=index.titles[d], position=p,
                                   before="".join(toks[max(0, p - before):p]), token=toks[p],
                                   after="".join(toks[p + 1:p + 1 + after])))
    return found
