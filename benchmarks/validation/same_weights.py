"""Same weights, two formats or containers: is each pair of the validation set "same network"?

Two kinds of pairs, both judged with ``nnequiv.compare`` at its defaults (shipped calibration):

* **shipped conversions**: the manifest's ``same_weights_as`` column (a package's int8 TFLite
  or int8 ONNX export beside its float source);
* **containers built here**: the arrays nnequiv reads from a few networks of the set, written
  into other containers under ``--work``: unchanged into ``.npz`` and ``.safetensors`` (bare
  arrays, whose layout nnequiv infers: the pair also checks that inference), and into a
  ``torch.save`` state dict ``.pt`` in PyTorch's own layout (kernels transposed to
  ``out x in x kh x kw`` as a converter writes them). A bare-array pair that is not "same
  network" is judged again with the source format's layout given (``layout=``, ``--layout``),
  and both verdicts are shown.

Like ``loads.py`` it measures nothing the set's labels could be fitted to: a pair holds the
same weights by construction (or by the package's own statement), so "same network" is the
only right answer.

Run: ``python benchmarks/validation/same_weights.py [--out DIR] [--work DIR]`` after
``fetch.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch import DEFAULT_OUT, read_manifest, target_path  # noqa: E402

#: Networks rewritten into other containers: one per source format that has its own layout or
#: its own way of storing arrays (legacy and zip PyTorch, a whole-module pickle, a NumPy
#: pickle, ONNX, TFLite, Keras HDF5, a TensorFlow checkpoint folder).
REWRITTEN = (
    "attacut_c",
    "beatnet_model_1_module",
    "g2pm_np_ckpt",
    "dnsmos_p808_small",
    "oww_alexa_h128",
    "tempocnn_shallowtemp_k2",
    "musicnn_msd",
)
CONTAINERS = (".npz", ".safetensors", ".pt")


def arrays_of(path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    """The arrays nnequiv reads from ``path`` (left-out tensors excluded), as data, and the
    layout its format declares."""
    from nnequiv.loading import open_weights

    source = open_weights(path)
    arrays = {
        name: np.array(value) for name, value in source.tensors() if isinstance(value, np.ndarray)
    }
    return arrays, source.layout


#: Axes that take a kernel of each layout to PyTorch's (out, in, spatial...), by ndim.
TO_OIHW = {
    "hwio": {2: (1, 0), 3: (2, 1, 0), 4: (3, 2, 0, 1), 5: (4, 3, 0, 1, 2)},
    "ohwi": {3: (0, 2, 1), 4: (0, 3, 1, 2), 5: (0, 4, 1, 2, 3)},
}


def in_pytorch_layout(arrays: dict[str, np.ndarray], layout: str | None) -> dict:
    """``arrays`` as a converter to PyTorch writes them: kernels out-first."""
    axes = TO_OIHW.get(layout or "", {})
    return {
        name: np.ascontiguousarray(value.transpose(axes[value.ndim]))
        if value.ndim in axes
        else value
        for name, value in arrays.items()
    }


def write(arrays: dict[str, np.ndarray], layout: str | None, path: Path) -> None:
    """``arrays`` in the container ``path``'s suffix names (a ``.pt`` in PyTorch's layout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({name: np.ascontiguousarray(value) for name, value in arrays.items()}, str(path))
    else:
        import torch

        tensors = in_pytorch_layout(arrays, layout)
        torch.save({name: torch.from_numpy(value) for name, value in tensors.items()}, path)


def pairs(out: Path, work: Path) -> list[tuple[str, Path, Path, str | None]]:
    """``(kind, a, b, layout)`` of every pair: the manifest's conversions, then the
    containers (``layout``: the source's, for a pair of bare arrays)."""
    rows = read_manifest()
    by_name = {row["name"]: target_path(out, row) for row in rows}
    found = [
        ("shipped", by_name[row["same_weights_as"]], by_name[row["name"]], None)
        for row in rows
        if row["same_weights_as"]
    ]
    for name in REWRITTEN:
        source = by_name[name]
        if not source.exists():
            continue
        arrays, layout = arrays_of(source)
        for suffix in CONTAINERS:
            target = work / f"{name}{suffix}"
            if not target.exists():
                write(arrays, layout, target)
            bare = suffix in (".npz", ".safetensors")
            found.append(("container", source, target, layout if bare else None))
    return found


def main(argv: list[str] | None = None) -> int:
    """Command line: the verdict of every pair."""
    import nnequiv

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder fetch.py wrote")
    parser.add_argument(
        "--work", type=Path, default=Path("bench-output/same-weights"), help="containers here"
    )
    args = parser.parse_args(argv)
    cache = args.work / "cache"
    print("| kind | a | b | verdict | d | eps | design d | with the source's layout |")
    print("|---|---|---|---|---|---|---|---|")
    same = given = total = 0
    for kind, a, b, layout in pairs(args.out, args.work):
        total += 1
        try:
            verdict = nnequiv.compare(str(a), str(b), cache_dir=cache)
            again = None
            if verdict.verdict != "same network" and layout is not None:
                again = nnequiv.compare(str(a), str(b), cache_dir=cache, layout=layout)
        except nnequiv.errors.NNEquivError as error:
            print(f"| {kind} | {a.name} | {b.name} | error: {error} | | | | |", flush=True)
            continue
        same += verdict.verdict == "same network"
        given += (again or verdict).verdict == "same network"
        cells = [
            kind,
            a.name,
            b.name,
            verdict.verdict,
            f"{verdict.distance:.4f}",
            f"{verdict.eps:.4f}",
            f"{verdict.design_distance:.4f}",
            "" if again is None else f"{layout}: {again.verdict} (d {again.distance:.4f})",
        ]
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\n{same} of {total} pairs are 'same network' ({given} with the source's layout given).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
