from factory.filters.setwise import (
    DedupParams,
    RowSummary,
    SelectionParams,
    dedup,
    exact_key,
    lsh_bands,
    pass_rates,
    select,
)

BASE = " ".join(f"step {i}: we add {i} and {i + 1} to get {2 * i + 1}." for i in range(40))


def _row(pid, tokens, text, correct=True, passed=True, near=True):
    p = DedupParams()
    return RowSummary(pid, tokens, passed, correct, exact_key(text, "\\boxed{1}"),
                      lsh_bands(f"{text}\n\\boxed{{1}}", p) if near else None)


def test_exact_duplicates_keep_the_shortest():
    rows = [_row("a", 30, "Add  THE numbers."), _row("b", 10, "add the numbers."), _row("c", 20, "Other text.")]
    assert dedup(rows, DedupParams(near=False)) == {0: "duplicate"}


def test_near_duplicates_are_caught_and_distinct_texts_kept():
    near = BASE.replace("step 7:", "step seven:")
    rows = [_row("a", 100, BASE), _row("b", 90, near), _row("c", 80, "A completely different line of reasoning. " * 20)]
    assert dedup(rows, DedupParams()) == {0: "near_duplicate"}


def test_rows_failing_row_filters_do_not_take_part():
    rows = [_row("a", 5, "same", passed=False), _row("b", 10, "same")]
    assert dedup(rows, DedupParams(near=False)) == {}


def test_pass_rate_and_selection():
    rows = [_row("p", t, f"text {t}", correct=c) for t, c in [(30, True), (10, True), (20, True), (40, False)]]
    rows += [_row("q", 5, "q text", correct=True)]
    rates = pass_rates(rows)
    assert rates == {"p": 0.75, "q": 1.0}
    alive = [0, 1, 2, 4]
    assert select(rows, alive, rates, SelectionParams(max_per_prompt=2)) == {0: "over_quota"}
    assert select(rows, alive, rates, SelectionParams(max_pass_rate=0.8)) == {4: "too_easy"}
    random_pick = select(rows, alive, rates, SelectionParams(max_per_prompt=1, strategy="random", seed=1))
    assert len(random_pick) == 2 and set(random_pick) <= {0, 1, 2}


def test_band_keys_find_the_candidates_datasketch_finds():
    """Our 8-byte band keys must flag exactly the rows MinHashLSH.query would, in the same greedy order."""
    import random

    from datasketch import MinHashLSH

    from factory.filters.setwise import minhash

    p, rng = DedupParams(), random.Random(0)
    words = BASE.split()
    texts = []
    for _ in range(60):  # variants of one text at many distances, so some pairs straddle the threshold
        w = list(words)
        for _ in range(rng.choice([0, 1, 2, 4, 8, 16, 40])):
            w[rng.randrange(len(w))] = rng.choice(["alpha", "beta", "gamma", str(rng.random())])
        texts.append(" ".join(w))
    lsh, expected = MinHashLSH(threshold=p.threshold, num_perm=p.num_perm), {}
    for i, text in enumerate(texts):  # the same order dedup uses: tokens (all equal here), then index
        m = minhash(f"{text}\n\\boxed{{1}}", p)
        if exact_key(text, "\\boxed{1}") in {exact_key(t, "\\boxed{1}") for t in texts[:i]}:
            expected[i] = "duplicate"
        elif lsh.query(m):
            expected[i] = "near_duplicate"
        else:
            lsh.insert(str(i), m)
    got = dedup([_row(str(i), 10, t) for i, t in enumerate(texts)], p)
    assert got == {i: why for i, why in expected.items()}
    assert "near_duplicate" in got.values() and len(got) < len(texts) - 1
