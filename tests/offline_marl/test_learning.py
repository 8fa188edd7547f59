"""Each algorithm learns: after a small budget on the easy single-convention reacher task, its
normalised score is far above the random policy's (~0 by definition of the scale)."""
import pytest

from offline_marl.train_agents import main

pytestmark = pytest.mark.slow  # learning tests

# (algorithm, updates, minimum normalised score after them); random policy ~ 0, data ~ 106.
BUDGETS = [("bc", 1500, 60.0)]


@pytest.mark.parametrize("alg_name, steps, minimum", BUDGETS)
def test_algorithm_learns_on_reacher(alg_name, steps, minimum, reacher_c_path, train_args, tmp_path):
    summary = main(train_args(alg_name, reacher_c_path, tmp_path / "run", steps))
    assert summary["steps"] == steps
    assert summary["final_normalized_score"] >= minimum, summary
