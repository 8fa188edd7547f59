"""Agent colours in rendered frames: which bodies each agent owns, the painted geoms, the pixels, and
rendering leaving the physics untouched."""
import numpy as np
import pytest

from dzsc.envs import MultiAgentEnv, agent_joints
from dzsc.partitions import BODIES
from dzsc.partitions.colours import AGENT_COLOURS, body_owners
from dzsc.tasks import get_task

# Geoms each agent drives, by hand from the models (every other geom keeps its colour).
AGENT_GEOMS = {
    "reacher-expert-mix-gen_2x1_0": [["link0"], ["link1", "fingertip"]],
    "ant-random-gen_4x2_0": [["left_leg_geom", "left_ankle_geom"], ["right_leg_geom", "right_ankle_geom"],
                             ["back_leg_geom", "third_ankle_geom"], ["rightback_leg_geom", "fourth_ankle_geom"]],
    "hopper-random-gen_3x1_0": [["thigh_geom"], ["leg_geom"], ["foot_geom"]],
    "halfcheetah-random-gen_1x6_0": [["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"]],
}


def owners(task_name):
    task = get_task(task_name)
    model = BODIES[task.body].make_model()
    return model, body_owners(model, agent_joints(task))


def test_each_body_belongs_to_the_agent_driving_its_nearest_joint():
    model, owner = owners("reacher-expert-mix-gen_2x1_0")
    assert {model.body(b).name: int(owner[b]) for b in range(model.nbody)} == {
        "world": -1, "body0": 0, "body1": 1, "fingertip": 1, "target": -1}
    model, owner = owners("halfcheetah-random-gen_6x1_0")
    assert [int(owner[model.body(name).id]) for name in ("torso", "bthigh", "bshin", "bfoot", "fthigh", "fshin",
                                                         "ffoot")] == [-1, 0, 1, 2, 3, 4, 5]
    for conf, legs in (("t4x2", [0, 1, 2, 3]), ("2x4d", [0, 1, 1, 0]), ("1x8", [0, 0, 0, 0])):
        model, owner = owners(f"ant-random-gen_{conf}_0")
        expected = {model.body("torso").id: -1}
        for leg, agent in enumerate(legs, start=1):
            hip_body = model.body(f"aux_{leg}").id
            expected[model.body_parentid[hip_body]] = -1  # the stub fixed to the torso moves with it
            expected[hip_body] = expected[int(np.flatnonzero(model.body_parentid == hip_body)[0])] = agent
        assert {b: int(owner[b]) for b in expected} == expected


@pytest.mark.parametrize("task_name", list(AGENT_GEOMS))
def test_only_a_rendering_environment_paints_exactly_the_agents_geoms(task_name):
    original = BODIES[get_task(task_name).body].make_model()
    plain, rendering = MultiAgentEnv(task_name), MultiAgentEnv(task_name, render_mode="rgb_array", width=32, height=32)
    np.testing.assert_array_equal(plain.model.geom_rgba, original.geom_rgba)
    np.testing.assert_array_equal(plain.model.geom_matid, original.geom_matid)
    painted = set()
    for (_, rgb), geoms in zip(AGENT_COLOURS, AGENT_GEOMS[task_name]):
        for name in geoms:
            g = rendering.model.geom(name).id
            np.testing.assert_allclose(rendering.model.geom_rgba[g], [*np.array(rgb) / 255, 1.0], atol=1e-6)
            assert rendering.model.geom_matid[g] == -1
            painted.add(g)
    others = [g for g in range(original.ngeom) if g not in painted]
    np.testing.assert_array_equal(rendering.model.geom_rgba[others], original.geom_rgba[others])
    np.testing.assert_array_equal(rendering.model.geom_matid[others], original.geom_matid[others])
    plain.close()
    rendering.close()


def colour_pixels(frame, rgb):
    """Pixels of one palette colour as lighting renders it: the same hue (within ~6 degrees of the RGB
    direction) and at least a quarter of its brightness."""
    pixels, colour = frame.astype(float), np.array(rgb, dtype=float)
    norms = np.linalg.norm(pixels, axis=-1)
    cosine = pixels @ colour / np.maximum(norms, 1e-9) / np.linalg.norm(colour)
    return int(((cosine > 0.995) & (norms > 0.25 * np.linalg.norm(colour))).sum())


@pytest.mark.parametrize("task_name", ["reacher-expert-mix-gen_2x1_0", "ant-random-gen_4x2_0",
                                       "halfcheetah-random-gen_2x3_0"])
def test_the_frame_shows_every_agent_in_its_colour(task_name):
    env = MultiAgentEnv(task_name, render_mode="rgb_array", width=128, height=128)
    env.reset(seed=0)
    frame = env.render()
    env.close()
    counts = [colour_pixels(frame, rgb) for _, rgb in AGENT_COLOURS]
    assert min(counts[: env.n_agents]) > 20, counts
    if task_name.startswith("ant"):  # no other part of the ant or its floor has those hues
        assert max(counts[env.n_agents :]) < 20, counts


@pytest.mark.parametrize("task_name", ["reacher-expert-mix-gen_2x1_0", "ant-random-gen_4x2_0",
                                       "hopper-random-gen_3x1_0"])
def test_rendering_leaves_observations_and_rewards_exactly_the_same(task_name):
    runs = []
    for render_mode in (None, "rgb_array"):
        env = MultiAgentEnv(task_name, render_mode=render_mode, width=48, height=48)
        rng = np.random.default_rng(3)
        observations, rewards = [env.reset(seed=3)[1]["global_obs"]], []
        for t in range(20):
            if render_mode and t % 5 == 0:
                env.render()
            obs, reward, _, _, _ = env.step_global(rng.uniform(env.action_low, env.action_high))
            observations.append(obs)
            rewards.append(reward)
        env.close()
        runs.append((np.array(observations), rewards))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("task_name", ["halfcheetah-random-gen_2x3_0", "ant-random-gen_4x2_0"])
def test_the_camera_follows_a_body_that_moved_far_away(task_name):
    env = MultiAgentEnv(task_name, render_mode="rgb_array", width=128, height=128)
    env.reset(seed=0)
    env.render()  # the camera is set up here, looking at the body where it starts
    qpos = env.data.qpos.copy()
    qpos[0] += 30.0  # 30 m along x
    env.env.set_state(qpos, env.data.qvel.copy())
    frame = env.render()
    env.close()
    assert min(colour_pixels(frame, rgb) for _, rgb in AGENT_COLOURS[: env.n_agents]) > 20
