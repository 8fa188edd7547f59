"""Published data is stepped in the environment it was recorded in (Gymnasium v4 for D4RL `*-v2` and the authors'
reacher `*-v0`), the project's own data in v5: exact rewards of known states and actions under both semantics.

The pinned values hold on the pinned physics (mujoco 4.0.0, gymnasium 1.4.0)."""
import warnings

import numpy as np
import pytest
import torch

from dzsc.envs import MultiAgentEnv
from dzsc.known_structure import known_structure
from dzsc.tasks import get_task


def step_from(task_name: str, qpos_changes: dict, action, qvel_changes: dict | None = None):
    """(observation before, observation after, reward, terminated) of one step from the model's reference pose with
    the given qpos / qvel entries set."""
    env = MultiAgentEnv(task_name)
    env.reset(seed=0)
    qpos, qvel = env.model.qpos0.copy(), np.zeros(env.model.nv)
    for index, value in qpos_changes.items():
        qpos[index] = value
    for index, value in (qvel_changes or {}).items():
        qvel[index] = value
    env.env.set_state(qpos, qvel)
    obs = env.observation()
    next_obs, reward, terminated, _, _ = env.step_global(np.asarray(action, dtype=np.float64))
    return obs, next_obs, reward, terminated


@pytest.mark.parametrize("task_name, env_id, kwargs", [
    ("hopper-medium-v2_3x1_0", "Hopper-v4", {}),
    ("hopper-random-gen_3x1_0", "Hopper-v5", {}),
    ("walker2d-medium-v2_2x3_0", "Walker2d-v4", {}),
    ("halfcheetah-medium-v2_2x3_0", "HalfCheetah-v4", {}),
    ("ant-full-replay-v2_t4x2_0", "Ant-v4", {"use_contact_forces": False}),
    ("ant-full-replay-gen_t4x2_0", "Ant-v5", {"include_cfrc_ext_in_observation": False}),
    ("reacher-expert-mix-v0_2x1first_0", "Reacher-v4", {}),
    ("reacher-expert-mix-gen_2x1first_0", "Reacher-v5", {}),
])
def test_the_version_names_the_environment(task_name, env_id, kwargs):
    task = get_task(task_name)
    assert (task.env_id, task.environment.kwargs) == (env_id, kwargs)
    assert task.describe()["env_id"] == env_id


@pytest.mark.parametrize("body, conf, qpos_changes, action, reward_v4", [
    ("hopper", "3x1", {2: 0.5}, [0.1, -0.2, 0.3], 0.9916185795321619),  # torso tilted past 0.2 rad
    ("walker2d", "2x3", {1: 3.0}, [0.1, -0.2, 0.3, 0.0, 0.5, -0.5], 0.9540349357711524),  # torso above z = 2
    ("ant", "4x2", {2: 2.0}, [0.1] * 8, 0.9615831959320766),  # torso above z = 1, in the air: no contact
])
def test_the_terminal_step_pays_the_healthy_reward_in_v4_only(body, conf, qpos_changes, action, reward_v4):
    *_, old_reward, old_terminated = step_from(f"{body}-medium-v2_{conf}_0", qpos_changes, action)
    *_, new_reward, new_terminated = step_from(f"{body}-random-gen_{conf}_0", qpos_changes, action)
    assert old_terminated and new_terminated
    assert old_reward == pytest.approx(reward_v4, abs=1e-9)
    assert new_reward == pytest.approx(reward_v4 - 1.0, abs=1e-9)


def test_halfcheetah_pays_the_same_in_both():
    for version in ("v2", "gen"):
        *_, reward, _ = step_from(f"halfcheetah-medium-{version}_2x3_0", {1: 1.0},
                                  [0.1, -0.2, 0.3, 0.0, 0.5, -0.5])
        assert reward == pytest.approx(0.008479583831295073, abs=1e-9)


def test_ant_v5_alone_pays_a_contact_cost():
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 8))
    runs = {}
    for version in ("v2", "gen"):
        env = MultiAgentEnv(f"ant-full-replay-{version}_4x2_0")
        env.reset(seed=0)
        runs[version] = [env.step_global(action) for action in actions]
    for (old_obs, old_reward, *_), (new_obs, new_reward, _, _, info) in zip(runs["v2"], runs["gen"]):
        np.testing.assert_array_equal(old_obs, new_obs)  # the same model: the dynamics agree
        assert old_reward - new_reward == pytest.approx(-info["reward_contact"], abs=1e-12)
    assert runs["v2"][1][1] == pytest.approx(-1.184563613286096, abs=1e-9)
    assert runs["gen"][1][1] == pytest.approx(-1.1871376101552644, abs=1e-9)


def test_walker2d_v4_keeps_the_old_right_foot_friction():
    for version, friction in (("v2", 0.9), ("gen", 1.9)):
        model = MultiAgentEnv(f"walker2d-medium-{version}_2x3_0").model
        assert model.geom_friction[model.geom("foot_geom").id, 0] == friction
        assert model.geom_friction[model.geom("foot_left_geom").id, 0] == 1.9


def test_reacher_pays_the_distance_before_the_step_in_v4_and_after_it_in_v5():
    pose = {0: 0.3, 1: -0.5, 2: 0.1, 3: -0.1}
    control = 0.5**2 + 0.25**2
    for version, paid_on, pinned in (("v0", 0, -0.4617591729921622), ("gen", 1, -0.4627177009862688)):
        obs, next_obs, reward, _ = step_from(f"reacher-random-{version}_2x1_0", pose, [0.5, -0.25], {0: 1.0, 1: -2.0})
        assert obs.shape == next_obs.shape == (10,)  # Reacher-v4's always-zero 11th entry is dropped
        assert reward == pytest.approx(pinned, abs=1e-12)
        assert reward == pytest.approx(-np.linalg.norm((obs, next_obs)[paid_on][8:10]) - control, abs=1e-12)


@pytest.mark.parametrize("version", ["v0", "gen"])
def test_reacher_known_reward_follows_the_version(version):
    task = get_task(f"reacher-random-{version}_2x1_0")
    structure = known_structure(task)
    env = MultiAgentEnv(task)
    obs = env.reset(seed=3)[1]["global_obs"]
    for action in np.random.default_rng(1).uniform(-1, 1, (20, 2)):
        next_obs, reward, *_ = env.step_global(action)
        as_tensor = lambda array: torch.as_tensor(array, dtype=torch.float64)[None]  # noqa: E731
        predicted = structure.reward(as_tensor(obs), as_tensor(action), as_tensor(next_obs))
        assert float(predicted) == pytest.approx(reward, abs=1e-12)
        obs = next_obs


def test_the_v4_classes_are_made_without_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MultiAgentEnv("hopper-medium-v2_3x1_0")
    assert not [w for w in caught if "out of date" in str(w.message)]
