"""The frame strip: which frames, where they land, the image's size with and without a legend."""
import imageio.v3 as iio
import numpy as np

from dzsc.tasks import get_task
from offline_marl.evaluation import save_frame_strip


def solid_frames(count, height=40, width=60):
    """Frame i filled with the colour (i, 2i, 255 - i)."""
    return [np.broadcast_to(np.array([i, 2 * i, 255 - i], dtype=np.uint8), (height, width, 3)).copy()
            for i in range(count)]


def test_strip_shows_n_evenly_spaced_frames_at_full_size_above_the_legend(tmp_path):
    path = save_frame_strip(solid_frames(11), tmp_path / "strip.png", get_task("reacher-expert-mix-gen_2x1_0"), n=4)
    image = iio.imread(path)[..., :3]
    # 4 frames of 60 px, 4 px apart; 24 px of step labels, the frames (40), a legend of 2 rows (8 + 2 x 22)
    assert image.shape == (24 + 40 + 8 + 2 * 22, 4 * 60 + 3 * 4, 3)
    for panel, step in enumerate([0, 3, 7, 10]):
        left = panel * 64
        np.testing.assert_array_equal(image[24 : 24 + 40, left : left + 60].reshape(-1, 3),
                                      np.tile([step, 2 * step, 255 - step], (40 * 60, 1)))
        if panel:
            np.testing.assert_array_equal(image[24 : 24 + 40, left - 4 : left], 255)


def test_strip_of_a_short_episode_and_of_the_game_without_colour_legend(tmp_path):
    short = iio.imread(save_frame_strip(solid_frames(3), tmp_path / "a.png", get_task("ant-random-gen_4x2_0")))
    assert short.shape[:2] == (24 + 40 + 8 + 4 * 22, 3 * 60 + 2 * 4)  # one ~200 px label a row in 188 px
    game_task = get_task("coordination-expert-mix-v0_2x1_0")
    game = iio.imread(save_frame_strip(solid_frames(10), tmp_path / "g.png", game_task, n=5))
    assert game.shape[:2] == (24 + 40, 5 * 60 + 4 * 4)
