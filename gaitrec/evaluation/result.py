"""The one shape of an evaluation result, returned by every protocol and read by every consumer.

``EvaluationResult.figures`` are the benchmark's named figures (JSON ``results``): ``NM-rank1``, ``BG-mAP``,
``Normal-rank3``, ``rank1``, ``mAP`` ..., percentages. ``headline`` names the one papers quote first.
``rows`` are the lines of the per-view table: a condition's measure at every probe view and the name of
its mean in ``figures``, so that no reader has to guess which figure belongs to which row.
``to_json`` gives the JSON of ``gaitrec evaluate --json`` and ``results.json`` (see README "Interfaces").
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One line of a per-view table.

    ``condition``: the probe condition (``NM``, ``Bag``, ...); ``measure``: ``rank1`` or ``mAP``;
    ``figure``: the key of the row's mean in ``EvaluationResult.figures``; ``label``: the row's name in
    tables and its key in the JSON ``per_view`` (the condition for single-view protocols, which report
    rank-1 only; ``<condition>-<measure>`` for cross-view ones); ``per_view``: probe view -> %.
    """
    condition: str
    measure: str
    figure: str
    label: str
    per_view: dict[str, float]


@dataclass
class EvaluationResult:
    """What ``protocols.evaluate`` returns.

    ``matrix``: per condition ``{"views", "accuracy"}`` (probe x gallery view rank-1, single-view
    protocols; ``accuracy_by_rank`` with rank-k). ``cmc``: rank-k curves per series. ``counts``: probes and
    gallery sizes. ``csv``: a server submission (GREW). ``model`` and ``checkpoint`` name where the features
    came from, when known.
    """
    protocol: str
    metric: str
    figures: dict[str, float | int]
    headline: str
    rows: list[Row] = field(default_factory=list)
    rerank: bool = False
    rerank_params: dict | None = None
    matrix: dict[str, dict] = field(default_factory=dict)
    cmc: dict[str, list[float]] = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    csv: str | None = None
    model: str | None = None
    checkpoint: str | None = None

    def __post_init__(self):
        if self.headline not in self.figures:
            raise ValueError(f"headline {self.headline!r} is not one of the figures {list(self.figures)}")
        missing = [row.figure for row in self.rows if row.figure not in self.figures]
        if missing:
            raise ValueError(f"rows name figures {missing} that the result does not hold")

    def row_mean(self, row: Row) -> float:
        """The mean of ``row`` over probe views, as the protocol reports it."""
        return self.figures[row.figure]

    def to_json(self) -> dict:
        """A JSON-serialisable dict, unrounded (``report.rounded`` rounds for display).

        Keys: ``protocol``, ``metric``, ``rerank`` (``rerank_params`` when re-ranked), ``headline``,
        ``results`` (the figures), ``per_view`` (row label -> probe view -> %), ``rows`` (condition,
        measure, figure, label per row), ``counts``; ``matrix``, ``cmc``, ``csv``, ``model`` and
        ``checkpoint`` where present.
        """
        out = {}
        if self.model is not None:
            out["model"] = self.model
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        out.update({"protocol": self.protocol, "metric": self.metric, "rerank": self.rerank})
        if self.rerank_params is not None:
            out["rerank_params"] = dict(self.rerank_params)
        out.update({
            "headline": self.headline,
            "results": dict(self.figures),
            "per_view": {row.label: dict(row.per_view) for row in self.rows},
            "rows": [{"condition": row.condition, "measure": row.measure, "figure": row.figure,
                      "label": row.label} for row in self.rows],
            "counts": self.counts,
        })
        if self.matrix:
            out["matrix"] = self.matrix
        if self.cmc:
            out["cmc"] = self.cmc
        if self.csv is not None:
            out["csv"] = self.csv
        return out

    @classmethod
    def from_json(cls, data: dict) -> "EvaluationResult":
        """The result ``to_json`` wrote (a ``results.json``; a ``submission`` file name stands in for ``csv``)."""
        rows = [Row(r["condition"], r["measure"], r["figure"], r["label"], dict(data["per_view"][r["label"]]))
                for r in data.get("rows", [])]
        return cls(protocol=data["protocol"], metric=data["metric"], figures=dict(data["results"]),
                   headline=data["headline"], rows=rows, rerank=bool(data.get("rerank", False)),
                   rerank_params=data.get("rerank_params"), matrix=data.get("matrix") or {},
                   cmc=data.get("cmc") or {}, counts=data.get("counts") or {}, csv=data.get("csv"),
                   model=data.get("model"), checkpoint=data.get("checkpoint"))

    # Read access by JSON key (``result["results"]``) for code written against the dict this replaced.
    def __getitem__(self, key: str):
        return self.to_json()[key]

    def get(self, key: str, default=None):
        return self.to_json().get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.to_json()
