"""Task registry: the grammar, every combination of TASKS.md, indices checked through MuJoCo."""
import json
import subprocess
import sys

import numpy as np
import pytest

from dzsc.errors import UnknownTaskError
from dzsc.partitions import BODIES
from dzsc.tasks import get_task, parse_task_name, task_names

# The combinations TASKS.md lists (plus the single-agent 1xN references), typed independently of the registry.
EXPECTED_CONFS = {
    "reacher": {"2x1", "2x1notip", "2x1first", "2x1second", "1x2"},
    "halfcheetah": {"2x3", "6x1", "1x6"},
    "hopper": {"3x1", "1x3"},
    "walker2d": {"2x3", "6x1", "1x6"},
    "ant": {"4x2", "t4x2", "2x4", "2x4d", "1x8"},
}
PLANAR_OBSK = {"full", "0", "0t", "0tv", "0txv", "0tnv"}
EXPECTED_OBSK = {"reacher": {"0", "full"}, "halfcheetah": PLANAR_OBSK, "hopper": PLANAR_OBSK,
                 "walker2d": PLANAR_OBSK, "ant": PLANAR_OBSK | {"0txyv"}}
ALL = task_names(include_dev=False)
MUJOCO = [name for name, body in BODIES.items() if body.simulator == "mujoco"]  # the game: test_coordination_game.py


def test_registry_lists_every_combination_of_the_spec():
    for body, confs in EXPECTED_CONFS.items():
        names = [n for n in ALL if n.startswith(body + "-")]
        assert {parse_task_name(n)["agent_conf"] for n in names} == confs
        assert {parse_task_name(n)["obsk"] for n in names} == EXPECTED_OBSK[body]
        assert len(names) == (len(confs) * len(EXPECTED_OBSK[body]) * len(BODIES[body].datasets)
                              * len(BODIES[body].versions))
    assert set(task_names()) == set(ALL) | {n + "_DEV" for n in ALL}
    for name in ("reacher-expert-mix-gen_2x1first_0", "ant-full-replay-v2_t4x2_0", "halfcheetah-medium-v2_2x3_0t_DEV",
                 "walker2d-medium-v2_2x3_0", "hopper-medium-v2_3x1_full", "hopper-random-gen_3x1_0t"):
        assert name in set(task_names())


def _observed_after_perturbing(spec, qpos_address):
    """Observation indices that change when one joint position moves (through the env's own _get_obs)."""
    env = spec.make()
    env.reset(seed=0)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    base = env._get_obs().copy()
    qpos[qpos_address] += 0.3
    env.set_state(qpos, qvel)
    changed = set(np.flatnonzero(np.abs(env._get_obs() - base) > 1e-9).tolist())
    env.close()
    return changed


@pytest.mark.parametrize("body_name, version", [(b, v) for b in MUJOCO for v in BODIES[b].versions])
def test_every_partition_owns_each_actuator_once_and_observes_the_joints_it_drives(body_name, version):
    body = BODIES[body_name]
    model = body.make_model(version)
    observed_by_actuator = {
        a: _observed_after_perturbing(body.environments[version], model.jnt_qposadr[model.actuator_trnid[a, 0]])
        for a in range(model.nu)
    }
    for name in [n for n in ALL if n.startswith(body_name + "-") and parse_task_name(n)["version"] == version]:
        task = get_task(name)
        owners = [a for agent in task.agents for a in agent.action_indices]
        assert sorted(owners) == list(range(model.nu)), f"{name}: each actuator must have exactly one owner"
        for agent in task.agents:
            assert len(agent.obs_indices) == len(set(agent.obs_indices)) and max(agent.obs_indices) < task.obs_dim
            for a in agent.action_indices:
                seen = observed_by_actuator[a] & set(agent.obs_indices)
                assert seen, f"{name}: an agent drives actuator {a} but observes no position of its joint"


def test_ant_actuator_order_is_read_from_the_model():
    model = BODIES["ant"].make_model()
    leg1 = get_task("ant-expert-v2_4x2_0").agents[0]
    names = {model.joint(model.actuator_trnid[a, 0]).name for a in leg1.action_indices}
    assert names == {"hip_1", "ankle_1"} and leg1.action_indices == (2, 3)


def test_observability_of_the_reacher_and_ant_configurations():
    first = get_task("reacher-expert-mix-gen_2x1first_0")
    assert {4, 5} <= set(first.agents[0].obs_indices) and not {4, 5, 8, 9} & set(first.agents[1].obs_indices)
    notip = get_task("reacher-expert-mix-gen_2x1notip_0")
    assert all(not {8, 9} & set(agent.obs_indices) for agent in notip.agents)
    t4x2 = get_task("ant-full-replay-v2_t4x2_0")
    assert set(range(5)) | set(range(13, 19)) <= set(t4x2.agents[0].obs_indices)
    assert all(not set(range(5)) & set(agent.obs_indices) for agent in t4x2.agents[1:])
    full = get_task("hopper-medium-v2_3x1_full")
    assert all(agent.obs_indices == tuple(range(11)) for agent in full.agents)


@pytest.mark.parametrize(
    "name, piece",
    [
        ("halfchetah-medium-v2_2x3_0", "unknown body 'halfchetah'"),
        ("hopper-meduim-v2_3x1_0", "did you mean 'medium'"),
        ("ant-expert-v3_4x2_0", "unknown ant dataset version 'v3'"),
        ("ant-expert-v2_t5x2_0", "did you mean 't4x2'"),
        ("hopper-expert-v2_3x1_0txyv", "unknown hopper obsk '0txyv'"),
        ("reacher-expert-mix-gen", "malformed task name"),
    ],
)
def test_bad_task_names_name_the_bad_piece_and_the_choices(name, piece):
    with pytest.raises(UnknownTaskError) as error:
        get_task(name)
    assert piece in str(error.value)
    assert "valid choices" in str(error.value) or "expected" in str(error.value)


def test_command_line_list_and_describe():
    run = lambda *args: subprocess.run([sys.executable, "-m", "dzsc.tasks", *args], capture_output=True, text=True)  # noqa: E731
    listed = run("list")
    assert listed.returncode == 0 and listed.stdout.split() == task_names()
    described = run("describe", "ant-full-replay-v2_t4x2_0", "--json")
    payload = json.loads(described.stdout)
    assert payload["n_agents"] == 4 and payload["obs_dim"] == 27 and payload["action_dim"] == 8
    assert payload["agents"][3]["action_indices"] == [0, 1]  # leg 4 drives the model's first two actuators
    bad = run("describe", "ant-full-replay-v2_t5x2_0", "--json")
    assert bad.returncode == 2 and "t4x2" in bad.stderr and bad.stdout == ""


def test_describe_is_consistent_with_the_model_for_every_task():
    for name in [n for n in ALL if parse_task_name(n)["body"] in MUJOCO]:
        task = get_task(name)
        model = BODIES[task.body].make_model(task.version)
        assert task.action_dim == model.nu
        assert task.obs_dim == {"reacher": 10, "halfcheetah": 17, "hopper": 11, "walker2d": 17, "ant": 27}[task.body]
        assert json.loads(json.dumps(task.describe()))["n_agents"] == task.n_agents
