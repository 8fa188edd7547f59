"""Ant's two-agent splits, index by index (TASKS.md): 2x4 = legs 1+2 | legs 3+4, 2x4d = legs 1+4 | legs 2+3.

Ant-v5 observation (include_cfrc_ext_in_observation=False): hip_k position at 5 + 2 (k - 1), ankle_k at
6 + 2 (k - 1); their velocities 14 entries later (19 + 2 (k - 1), 20 + 2 (k - 1)). Actuators are ordered
hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3, so leg k drives (2, 3) for k = 1, (4, 5)
for 2, (6, 7) for 3 and (0, 1) for 4.
"""
import pytest

from dzsc.partitions.ant import BODY
from dzsc.tasks import get_task

LEG_OBS = {1: (5, 6, 19, 20), 2: (7, 8, 21, 22), 3: (9, 10, 23, 24), 4: (11, 12, 25, 26)}
LEG_ACTIONS = {1: (2, 3), 2: (4, 5), 3: (6, 7), 4: (0, 1)}
TORSO = (0, 1, 2, 3, 4, 13, 14, 15, 16, 17, 18)  # z, quaternion; linear and angular velocities

EXPECTED = {  # agent_conf -> per agent (observation indices, action indices) with obsk 0
    "2x4": (((5, 6, 7, 8, 19, 20, 21, 22), (2, 3, 4, 5)), ((9, 10, 11, 12, 23, 24, 25, 26), (0, 1, 6, 7))),
    "2x4d": (((5, 6, 11, 12, 19, 20, 25, 26), (0, 1, 2, 3)), ((7, 8, 9, 10, 21, 22, 23, 24), (4, 5, 6, 7))),
}


@pytest.mark.parametrize("conf", sorted(EXPECTED))
def test_two_agent_ant_indices(conf):
    task = get_task(f"ant-expert-v2_{conf}_0")
    assert [(agent.obs_indices, agent.action_indices) for agent in task.agents] == list(EXPECTED[conf])


def test_2x4d_is_the_diagonal_split_and_differs_from_2x4():
    def legs(a: int, b: int) -> tuple:
        return tuple(sorted(LEG_OBS[a] + LEG_OBS[b])), tuple(sorted(LEG_ACTIONS[a] + LEG_ACTIONS[b]))

    assert EXPECTED["2x4d"] == (legs(1, 4), legs(2, 3)) and EXPECTED["2x4"] == (legs(1, 2), legs(3, 4))
    diagonal, side = get_task("ant-expert-v2_2x4d_0"), get_task("ant-expert-v2_2x4_0")
    assert diagonal.agents[0].parts == ("hip_1", "ankle_1", "hip_4", "ankle_4")
    assert diagonal.agents[1].parts == ("hip_2", "ankle_2", "hip_3", "ankle_3")
    assert [a.action_indices for a in diagonal.agents] != [a.action_indices for a in side.agents]


@pytest.mark.parametrize("conf", sorted(EXPECTED))
def test_two_agent_ant_with_the_torso(conf):
    task = get_task(f"ant-expert-v2_{conf}_0t")
    for agent, (obs, actions) in zip(task.agents, EXPECTED[conf]):
        assert agent.obs_indices == tuple(sorted(obs + TORSO)) and agent.action_indices == actions


def test_each_agent_drives_the_joints_it_observes():
    """The tables above against the compiled model's names: actuator a's joint, and where that joint sits."""
    model = BODY.make_model()
    joint_of_actuator = [model.joint(int(model.actuator_trnid[a, 0])).name for a in range(model.nu)]
    assert joint_of_actuator == ["hip_4", "ankle_4", "hip_1", "ankle_1", "hip_2", "ankle_2", "hip_3", "ankle_3"]
    for leg in (1, 2, 3, 4):
        for joint, (position, velocity) in zip((f"hip_{leg}", f"ankle_{leg}"),
                                               (LEG_OBS[leg][0::2], LEG_OBS[leg][1::2])):
            address = model.joint(joint)
            assert int(model.jnt_qposadr[address.id]) - 2 == position  # observation drops root x, y
            assert model.nq - 2 + int(model.jnt_dofadr[address.id]) == velocity
            assert joint_of_actuator[LEG_ACTIONS[leg][0 if joint.startswith("hip") else 1]] == joint
