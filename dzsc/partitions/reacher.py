"""Two-agent Reacher: agent i drives arm joint i.

Reacher observation: 0-1 cos q, 2-3 sin q, 4-5 target (x, y), 6-7 dq, 8-9 fingertip - target (Reacher-v4 adds
an always-zero tip-target z at 10, dropped).
Parts: arm0/arm1 = {cos, sin, dq} of that joint, target, tip.
"""
import mujoco

from dzsc.partitions.layout import AgentLayout, EnvSpec, MujocoBody, Part, actuators_of_joint


def parts_from_model(model: mujoco.MjModel) -> dict[str, Part]:
    arm_joints = [model.joint(j) for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE]
    target_joints = [model.joint(j) for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_SLIDE]
    n_arm = len(arm_joints)
    parts = {}
    for k, joint in enumerate(arm_joints):
        qadr, dadr = int(joint.qposadr[0]), int(joint.dofadr[0])
        obs = (qadr, n_arm + qadr, 2 * n_arm + len(target_joints) + dadr)  # cos, sin, dq
        parts[f"arm{k}"] = Part(f"arm{k}", obs, actuators_of_joint(model, joint.name))
    parts["target"] = Part("target", tuple(2 * n_arm + int(j.qposadr[0]) - n_arm for j in target_joints))
    tip0 = 3 * n_arm + len(target_joints)
    parts["tip"] = Part("tip", (tip0, tip0 + 1))
    return parts


BODY = MujocoBody(
    name="reacher",
    # v0: the MOMA-PPO authors' pickles, recorded with gym's Reacher-v2 (Gymnasium v4 keeps its reward: the
    # distance before the step; its 11th observation entry, always 0, is dropped); gen: the project's own data.
    environments={"v0": EnvSpec("Reacher-v4"), "gen": EnvSpec("Reacher-v5")},
    max_episode_steps=50,
    datasets=("expert-C", "expert-D", "expert-mix", "random"),
    agent_confs={
        "1x2": (AgentLayout(("joint0", "joint1"), ("target", "tip")),),  # single-agent reference
        "2x1": (AgentLayout(("joint0",), ("target", "tip")), AgentLayout(("joint1",), ("target", "tip"))),
        "2x1notip": (AgentLayout(("joint0",), ("target",)), AgentLayout(("joint1",), ("target",))),
        "2x1first": (AgentLayout(("joint0",), ("arm1", "target")), AgentLayout(("joint1",), ("arm0",))),
        "2x1second": (AgentLayout(("joint0",), ("arm1",)), AgentLayout(("joint1",), ("arm0", "target"))),
    },
    obsk={"0": (), "full": ("*",)},
    parts_from_model=parts_from_model,
    camera={"distance": 0.6, "elevation": -90.0, "azimuth": 90.0, "lookat": [0.0, 0.0, 0.0]},  # top-down, arm-sized
)
