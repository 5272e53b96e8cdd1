"""Fit the shipped default match models by EM (no labels) on multi-force FEBRL sets.

The service scores single-subject queries, where there is no batch of candidates to fit
EM on; it uses these models. Each is fitted through the production path: every force's
records encoded separately, candidates from the encodings, EM on their comparison levels.
Run: ``.venv/bin/python scripts/train_default_model.py`` (writes matcher/data/models/).
"""

from __future__ import annotations

import json
import secrets

import numpy as np

from matcher.datasets import build_multiforce
from matcher.encoding import encode_frame
from matcher.keys import LinkageSecret
from matcher.linkage import candidate_pairs
from matcher.schema import Hardening, default_schema
from matcher.scoring import compare, levels, model_path, train_model


def main() -> None:
    for hardening in (Hardening(), Hardening(mode="none")):
        schema = default_schema(hardening)
        all_lv = []
        for source, forces in (("febrl3", 5), ("febrl2", 7), ("febrl4", 2)):
            df = build_multiforce(source, n_forces=forces, seed=1234)
            secret = LinkageSecret(1, secrets.token_bytes(32))
            batches = [
                encode_frame(part, schema, secret, str(force)).batch
                for force, part in df.groupby("force")
            ]
            filters = np.concatenate([b.filters for b in batches])
            tokens = [t for b in batches for t in b.blocking_tokens]
            groups = np.concatenate([np.full(len(b), k) for k, b in enumerate(batches)])
            i, j = candidate_pairs(filters, tokens, groups.astype(np.int64))
            _, sim = compare(schema, filters, filters, i, j)
            all_lv.append(levels(sim))
        model = train_model(schema, np.concatenate(all_lv))
        path = model_path(schema)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path} (prior {model.prior:.4f})")


if __name__ == "__main__":
    main()
