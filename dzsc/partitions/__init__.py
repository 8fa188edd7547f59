"""How each body is split between agents.

One module per body declares its parts and its agent configurations (which joints each agent
drives, which extra parts it observes). For the five MuJoCo bodies (`MujocoBody`), parts are
declared by MuJoCo joint names and indices into the global observation and action vectors are
never typed by hand: `layout.py` derives them from the compiled MuJoCo model (joint addresses,
actuator transmissions). The pure-Python coordination game (`GameBody`, environment in
`dzsc.games`) declares its parts from the environment's own layout constants. Every body also has
a single-agent configuration `1xN` (one agent drives all N actuators), the reference point for
measuring what splitting a body costs and for comparisons with single-agent libraries.
"""
from dzsc.partitions import ant, coordination, halfcheetah, hopper, reacher, walker2d

BODIES = {module.BODY.name: module.BODY for module in (reacher, halfcheetah, hopper, walker2d, ant, coordination)}
