"""Scripted Reacher experts: quality and elbow convention in the real simulator, IK against MuJoCo, conventions."""
import mujoco
import numpy as np
import pytest

from dzsc.datasets.experts import (
    EXPERT_ELBOW_SIGN,
    ScriptedReacherExpert,
    elbow_convention,
    evaluate_expert,
)
from dzsc.envs import MultiAgentEnv
from dzsc.scores import normalized_score

TASK = "reacher-expert-mix-gen_2x1_0"


@pytest.fixture(scope="module")
def env():
    env = MultiAgentEnv(TASK)
    yield env
    env.close()


def fingertip_xy(model: mujoco.MjModel, q: np.ndarray) -> np.ndarray:
    """Fingertip world (x, y) for arm angles q = (q0, q1), by MuJoCo's own kinematics."""
    data = mujoco.MjData(model)
    data.qpos[:2] = q
    mujoco.mj_kinematics(model, data)
    return data.body("fingertip").xpos[:2].copy()


def test_observation_layout_matches_the_model(env):
    """The expert's reading of the observation (cos, sin, target, dq) is checked against qpos/qvel."""
    env.reset(seed=3)
    for _ in range(3):
        obs, *_ = env.step_global(np.array([0.3, -0.2]))
    qpos, qvel = env.data.qpos, env.data.qvel
    assert [env.model.joint(j).name for j in range(4)] == ["joint0", "joint1", "target_x", "target_y"]
    np.testing.assert_allclose(obs[0:2], np.cos(qpos[:2]))
    np.testing.assert_allclose(obs[2:4], np.sin(qpos[:2]))
    np.testing.assert_allclose(obs[4:6], qpos[2:4])
    np.testing.assert_allclose(obs[6:8], qvel[:2])
    # obs[4:6] is the target's world position (the slide joints' ref cancels the body offset).
    np.testing.assert_allclose(obs[4:6], env.data.body("target").xpos[:2], atol=1e-12)


def test_experts_reach_expert_level_with_opposite_elbows(env):
    assert EXPERT_ELBOW_SIGN["C"] == -EXPERT_ELBOW_SIGN["D"]
    assert set(EXPERT_ELBOW_SIGN.values()) == {1, -1}
    for name, sign in EXPERT_ELBOW_SIGN.items():
        result = evaluate_expert(ScriptedReacherExpert(env.model, sign), n_episodes=20, seed=0)
        assert result["normalized_score"] >= 95.0, (name, result)
        assert result["convention_purity"] >= 0.95, (name, result)
        assert result["normalized_score"] == pytest.approx(normalized_score("reacher", result["mean_return"]))


@pytest.mark.parametrize("elbow_sign", [1, -1])
def test_inverse_kinematics_hits_targets_in_mujoco(env, elbow_sign):
    model = env.model
    expert = ScriptedReacherExpert(model, elbow_sign)
    assert expert.l1 == pytest.approx(np.linalg.norm(model.body("body1").pos))
    assert expert.l2 == pytest.approx(np.linalg.norm(model.body("fingertip").pos))
    rng = np.random.default_rng(0)
    # Targets over the whole annulus the elbow's joint range can reach, up to Reacher's radius 0.2.
    d_min = np.sqrt(expert.l1**2 + expert.l2**2 + 2 * expert.l1 * expert.l2 * np.cos(expert.elbow_limit))
    radius = rng.uniform(d_min + 1e-3, 0.2, size=200)
    angle = rng.uniform(-np.pi, np.pi, size=200)
    targets = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    q_star = expert.inverse_kinematics(targets)
    assert q_star.shape == (200, 2)
    assert np.all(np.sign(q_star[:, 1]) == elbow_sign)
    for target, q in zip(targets, q_star):
        np.testing.assert_allclose(fingertip_xy(model, q), target, atol=1e-6)


def test_link_lengths_come_from_the_model():
    """A model with longer links gives a different, still exact, IK: nothing is hard-coded."""
    model = MultiAgentEnv(TASK).model
    model.body("body1").pos[0] = 0.13
    model.body("fingertip").pos[0] = 0.08
    expert = ScriptedReacherExpert(model, -1)
    assert (expert.l1, expert.l2) == (pytest.approx(0.13), pytest.approx(0.08))
    target = np.array([0.05, -0.17])
    np.testing.assert_allclose(fingertip_xy(model, expert.inverse_kinematics(target)), target, atol=1e-9)


def test_actions_are_batched_bounded_and_deterministic(env):
    obs = np.stack([env.reset(seed=s)[1]["global_obs"] for s in range(8)])
    for sign in (1, -1):
        expert = ScriptedReacherExpert(env.model, sign)
        actions = expert(obs)
        assert actions.shape == (8, 2)
        assert np.all(np.abs(actions) <= 1.0)
        np.testing.assert_array_equal(actions, expert(obs))
        np.testing.assert_allclose(expert(obs[3]), actions[3])
    with pytest.raises(ValueError, match="elbow_sign"):
        ScriptedReacherExpert(env.model, 0)


def test_elbow_convention_on_hand_made_observations():
    def obs_with_elbow(q1):
        obs = np.zeros(10)
        obs[[0, 2]] = np.cos(0.4), np.sin(0.4)
        obs[[1, 3]] = np.cos(q1), np.sin(q1)
        return obs

    assert elbow_convention(obs_with_elbow(0.7)) == 1
    assert elbow_convention(obs_with_elbow(-0.7)) == -1
    assert elbow_convention(obs_with_elbow(2.9)) == 1  # beyond pi/2: the sign of sin q1, not of cos q1
    assert elbow_convention(obs_with_elbow(-2.9)) == -1
    assert elbow_convention(obs_with_elbow(0.0)) == 0
    batch = np.stack([obs_with_elbow(q) for q in (0.1, -0.1, 0.0, 1e-9)]).reshape(2, 2, 10)
    conventions = elbow_convention(batch)
    assert conventions.shape == (2, 2)
    np.testing.assert_array_equal(conventions, [[1, -1], [0, 1]])
    assert conventions.dtype.kind == "i"
