"""Students: a layer subset of the teacher starts from the right weights; a foreign tokenizer is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from advisor.errors import ConfigError, ModelError
from distill.students import check_same_vocabulary, default_layer_map, student_from_teacher

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot", "the"]


def tiny_teacher(layers: int = 4) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=37,
        num_labels=3,
    )
    return BertForSequenceClassification(config).eval()


def tokenizer(folder: Path, words: list[str]) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file= in the constructor; from_pretrained reads vocab.txt
    return BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)


def test_default_map_keeps_every_other_layer_like_distilbert():
    assert default_layer_map(6, 3) == {0: 0, 1: 2, 2: 4}
    assert default_layer_map(12, 6) == {i: 2 * i for i in range(6)}
    assert default_layer_map(6, 6) == {i: i for i in range(6)}


def test_default_map_refuses_more_layers_than_the_teacher_has():
    with pytest.raises(ConfigError, match="--student-layers"):
        default_layer_map(6, 7)


def test_layer_subset_copies_the_mapped_teacher_layers():
    teacher = tiny_teacher(layers=4)
    student = student_from_teacher(teacher, {0: 1, 1: 3})
    assert student.config.num_hidden_layers == 2
    assert teacher.config.num_hidden_layers == 4  # the teacher's config is not touched
    for s, t in ((0, 1), (1, 3)):
        s_state = student.bert.encoder.layer[s].state_dict()
        t_state = teacher.bert.encoder.layer[t].state_dict()
        assert s_state.keys() == t_state.keys()
        for key in s_state:
            assert torch.equal(s_state[key], t_state[key]), key
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    # an independent copy: training the student leaves the teacher as it was
    with torch.no_grad():
        student.bert.encoder.layer[0].output.dense.weight.add_(1.0)
    assert not torch.equal(
        student.bert.encoder.layer[0].output.dense.weight, teacher.bert.encoder.layer[1].output.dense.weight
    )


def test_student_keeping_all_layers_computes_what_the_teacher_computes():
    teacher = tiny_teacher(layers=2)
    student = student_from_teacher(teacher, {0: 0, 1: 1}).eval()
    ids = torch.tensor([[2, 5, 7, 3]])
    with torch.no_grad():
        assert torch.allclose(student(input_ids=ids).logits, teacher(input_ids=ids).logits, atol=1e-6)


def test_bad_layer_maps_are_refused():
    teacher = tiny_teacher(layers=4)
    with pytest.raises(ConfigError):
        student_from_teacher(teacher, {0: 0, 1: 9})
    with pytest.raises(ConfigError):
        student_from_teacher(teacher, {1: 0})


def test_same_vocabulary_is_accepted(tmp_path):
    check_same_vocabulary(tokenizer(tmp_path / "a", WORDS), tokenizer(tmp_path / "b", WORDS))


def test_different_vocabulary_is_refused_with_a_clear_message(tmp_path):
    teacher_tok = tokenizer(tmp_path / "a", WORDS)
    student_tok = tokenizer(tmp_path / "b", WORDS[:-1] + ["movie"])
    with pytest.raises(ModelError, match=r"tokenizer of small-model differs from the teacher's.*1 only in the teacher"):
        check_same_vocabulary(teacher_tok, student_tok, "small-model")


def test_same_tokens_in_another_order_are_refused(tmp_path):
    teacher_tok = tokenizer(tmp_path / "a", WORDS)
    student_tok = tokenizer(tmp_path / "b", WORDS[:5] + list(reversed(WORDS[5:])))
    with pytest.raises(ModelError, match="other ids"):
        check_same_vocabulary(teacher_tok, student_tok)
