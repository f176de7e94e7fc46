"""config.json's task_specific_params both ways (``rosetta.hub.generation``) and the evaluation task they give
(``rosetta.tasks.text_to_text.task_for``): t5-small's own entries, a run's tasks, an ambiguous corpus."""

import pytest

from rosetta.hub.generation import task_specific_params, tasks_from_params
from rosetta.tasks.text_to_text import task_for

# t5-small's config.json (as published): three translation prefixes and a summarisation entry without a task name
T5_SMALL = {"task_specific_params": {
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 200, "min_length": 30,
                      "no_repeat_ngram_size": 3, "num_beams": 4, "prefix": "summarize: "},
    "translation_en_to_de": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to German: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to French: "},
    "translation_en_to_ro": {"early_stopping": True, "max_length": 300, "num_beams": 4,
                             "prefix": "translate English to Romanian: "}}}


def test_t5_smalls_translation_prefixes_are_read_and_the_rest_left_out():
    tasks = tasks_from_params(T5_SMALL)
    assert [(t["src_lang"], t["tgt_lang"], t["corpus"]) for t in tasks] == [("en", "de", None), ("en", "fr", None),
                                                                            ("en", "ro", None)]
    assert tasks[0]["prefix"] == "translate English to German: "
    assert tasks_from_params({}) == []
    assert tasks_from_params({"task_specific_params": {"translation_en_to_de": {}}}) == []  # no prefix: no task
    # evaluation: WMT14 (en, de) and Multi30k (de, en) both take en→de; nothing of t5-small's fits Tatoeba (en, zh)
    assert task_for({"tasks": tasks}, "wmt14-en-de")["prefix"] == "translate English to German: "
    assert task_for({"tasks": tasks}, "multi30k")["tgt_lang"] == "de"
    with pytest.raises(ValueError, match="not trained on 'tatoeba-en-zh', and 0 of"):
        task_for({"tasks": tasks}, "tatoeba-en-zh")


def test_a_runs_tasks_go_out_and_come_back_with_a_second_same_language_task_named_by_its_corpus():
    tasks = [{"corpus": "multi30k", "src_lang": "de", "tgt_lang": "en", "prefix": "de2en: "},
             {"corpus": "iwslt14-de-en", "src_lang": "de", "tgt_lang": "en", "prefix": "talks de2en: "}]
    params = task_specific_params(tasks)
    assert params == {"translation_de_to_en": {"prefix": "de2en: "},
                      "translation_de_to_en_iwslt14-de-en": {"prefix": "talks de2en: "}}
    back = tasks_from_params({"task_specific_params": params})
    assert back == [{**tasks[0], "corpus": None}, tasks[1]]
    # the named one by its corpus, the unnamed one by its languages
    assert task_for({"tasks": back}, "iwslt14-de-en")["prefix"] == "talks de2en: "
    assert task_for({"tasks": back}, "multi30k")["prefix"] == "de2en: "
    # both directions of one pair, neither naming a corpus: Multi30k (de, en) fits both, refused
    both = tasks_from_params({"task_specific_params": {"translation_de_to_en": {"prefix": "a: "},
                                                       "translation_en_to_de": {"prefix": "b: "}}})
    with pytest.raises(ValueError, match="not trained on 'multi30k', and 2 of"):
        task_for({"tasks": both}, "multi30k")
