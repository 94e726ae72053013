"""Regenerate ``ecs_fields.json`` from Elastic's ECS field definitions.

    python tests/data/make_ecs_fields.py PATH/TO/ecs/generated/ecs/ecs_flat.yml

``ecs_flat.yml`` is in github.com/elastic/ecs (Apache License 2.0); the copy here holds, for the
field sets our ECS alerts use, each field's type, whether it is an array, and its allowed
values: facts of the schema, checked by ``tests/findings/test_ecs.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

SETS = ("@timestamp", "message", "tags", "labels", "ecs", "event", "rule", "source",
        "destination", "network", "related", "threat", "observer")  # fmt: skip


def main(path: str) -> None:
    flat = yaml.safe_load(Path(path).read_text())
    out = {}
    for name, f in sorted(flat.items()):
        if name.split(".")[0] not in SETS:
            continue
        out[name] = {
            "type": f["type"],
            "array": "array" in (f.get("normalize") or []),
            "allowed": sorted(v["name"] for v in f.get("allowed_values") or []),
        }
    target = Path(__file__).with_name("ecs_fields.json")
    target.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"{len(out)} fields -> {target}")


if __name__ == "__main__":
    main(sys.argv[1])
