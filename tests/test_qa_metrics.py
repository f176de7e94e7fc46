"""QA metrics on hand-made cases, each expected value derived by hand from the official definitions (stated per
case), and SQuAD v1.1 against the official evaluate-v1.1.py functions copied below as the reference."""

import re
import string
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rosetta.tasks.qa_metrics import (
    cmrc_em,
    cmrc_f1,
    cmrc_segment,
    longest_common_substring,
    metric_for,
    qa_scores,
    squad_em,
    squad_f1,
)


# ----------------------------------------------------------- the official SQuAD v1.1 script (evaluate-v1.1.py)
def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def evaluate(dataset, predictions):
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article['paragraphs']:
            for qa in paragraph['qas']:
                total += 1
                if qa['id'] not in predictions:
                    message = 'Unanswered question ' + qa['id'] + ' will receive score 0.'
                    print(message, file=sys.stderr)
                    continue
                ground_truths = list(map(lambda x: x['text'], qa['answers']))
                prediction = predictions[qa['id']]
                exact_match += metric_max_over_ground_truths(
                    exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(
                    f1_score, prediction, ground_truths)

    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total

    return {'exact_match': exact_match, 'f1': f1}
# ----------------------------------------------------------- end of the official script's functions


# (prediction, gold answers, EM, F1), derived by hand from SQuAD v1.1's definitions
SQUAD_CASES = [
    # normalised both "eiffel tower" (case, "the", "!" dropped) → equal
    ("The Eiffel Tower!", ["eiffel tower"], 1.0, 1.0),
    # "in year 1066" vs "1066": 1 common of 3 predicted → P 1/3, R 1 → F1 2·(1/3)/(4/3) = 0.5
    ("in the year 1066", ["1066"], 0.0, 0.5),
    # best of two golds: "norman conquest" → P 2/4, R 1 → 2/3; "conquest of england" → P 3/4, R 1 → 6/7
    ("Norman conquest of England", ["the Norman conquest", "conquest of England"], 0.0, 6 / 7),
    # curly quotes are not ASCII punctuation: "“warsaw”" ≠ "warsaw", nothing in common
    ("“Warsaw”", ["Warsaw"], 0.0, 0.0),
    # bags: "x y y" ∩ "y y z" = {y: 2} → P 2/3, R 2/3 → 2/3
    ("x y y", ["y y z"], 0.0, 2 / 3),
    # only articles and punctuation: both normalise to "" → EM 1, but no tokens → F1 0
    ("The.", ["a"], 1.0, 0.0),
]

# (prediction, gold, EM, F1), derived by hand from cmrc2018_evaluate.py
CMRC_CASES = [
    # "。" is in the punctuation list: deleted for EM and for F1 → [北 京 大 学] both
    ("北京大学", "北京大学。", 1.0, 1.0),
    # [位 于 北 京] vs [北 京 大 学]: longest common substring 北京 = 2 → P 2/4, R 2/4 → 0.5
    ("位于北京", "北京大学", 0.0, 0.5),
    # substring, not subsequence: [北 x 京] vs [北 京] share runs of 1 only → P 1/3, R 1/2 → 0.4
    # (a subsequence LCS would give 2 → 0.8)
    ("北x京", "北京", 0.0, 0.4),
    # English/numbers by NLTK: [2008 年 5 月] vs [2008 年] → 2 → P 2/4, R 1 → 2/3
    ("2008年5月", "2008年", 0.0, 2 / 3),
    # lower-cased words: [java api] vs [java api for xml] → P 1, R 1/2 → 2/3
    ("Java API", "java api for XML", 0.0, 2 / 3),
    # "……" (two characters) is the listed mark, so "…" stays: EM 0; [等 等 …] vs [等 等] → P 2/3, R 1 → 0.8
    ("等等…", "等等", 0.0, 0.8),
    # EM keeps inner spaces ("光荣 和ωforce" ≠ "光荣和ωforce"); F1 drops "-" and the space → equal
    ("光荣 和ω-force", "光荣和ω-force", 0.0, 1.0),
]


@pytest.mark.parametrize("prediction, golds, em, f1", SQUAD_CASES)
def test_squad_hand_made(prediction, golds, em, f1):
    assert max(squad_em(prediction, g) for g in golds) == em
    assert max(squad_f1(prediction, g) for g in golds) == pytest.approx(f1)
    assert metric_max_over_ground_truths(exact_match_score, prediction, golds) == em  # the official agrees
    assert metric_max_over_ground_truths(f1_score, prediction, golds) == pytest.approx(f1)


@pytest.mark.parametrize("prediction, gold, em, f1", CMRC_CASES)
def test_cmrc_hand_made(prediction, gold, em, f1):
    assert cmrc_em(prediction, gold) == em
    assert cmrc_f1(prediction, gold) == pytest.approx(f1)


def test_cmrc_segmentation():
    assert cmrc_segment("《战国无双3》是由Koei和ω-force合作", remove_punctuation=False) == [
        "《", "战", "国", "无", "双", "3", "》", "是", "由", "koei", "和", "ω", "-", "force", "合", "作"]
    assert cmrc_segment("It isn't 2.5 km.") == ["it", "is", "n't", "2.5", "km", "."]  # Treebank words
    assert longest_common_substring(list("abcde"), list("xbcdy")) == 3
    assert longest_common_substring([], list("ab")) == 0


words = st.lists(st.sampled_from(["the", "a", "an", "Cat", "cat", "cat.", "dog", "“dog”", "1,066", "--", "x"]),
                 max_size=6).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(words, st.lists(words, min_size=1, max_size=3))
def test_squad_equals_the_official_script(prediction, golds):
    assert max(squad_em(prediction, g) for g in golds) == metric_max_over_ground_truths(
        exact_match_score, prediction, golds)
    assert max(squad_f1(prediction, g) for g in golds) == pytest.approx(
        metric_max_over_ground_truths(f1_score, prediction, golds))


def test_qa_scores_averages_and_counts_missing_as_zero():
    dataset = [{"paragraphs": [{"qas": [{"id": "1", "answers": [{"text": "1066"}]},
                                        {"id": "2", "answers": [{"text": "Warsaw"}, {"text": "the city"}]},
                                        {"id": "3", "answers": [{"text": "x"}]}]}]}]
    predictions = {"1": "in the year 1066", "2": "Warsaw"}  # "3" unanswered: counts 0
    golds = {qa["id"]: [a["text"] for a in qa["answers"]] for qa in dataset[0]["paragraphs"][0]["qas"]}
    ours = qa_scores(predictions, golds, "squad")
    official = evaluate(dataset, predictions)
    assert ours["em"] == pytest.approx(official["exact_match"]) == pytest.approx(100 / 3)
    assert ours["f1"] == pytest.approx(official["f1"]) == pytest.approx(100 * 1.5 / 3)
    cmrc = qa_scores({"a": "北京大学", "b": "位于北京"}, {"a": ["北京大学。"], "b": ["北京大学", "位于"]}, "cmrc")
    assert cmrc == {"em": pytest.approx(50.0), "f1": pytest.approx(100 * (1 + 2 / 3) / 2)}  # b: 位于 → P 2/4, R 1
    assert metric_for("zh") == "cmrc" and metric_for("en") == "squad" and metric_for("de") == "squad"
    with pytest.raises(ValueError, match="squad, cmrc"):
        qa_scores({}, {"a": ["x"]}, "bleu")
