"""CenterPoint's `Recipe` (recipes/centerpoint/recipe.py) writes its deployment's names without loading the network:
they are the ones the network and its export use."""

from cp_debug.recipes import catalog


def test_the_recipe_names_the_files_and_head_outputs_of_its_pair():
    from cp_debug.models.centerpoint.model import HEAD_OUTPUTS
    from cp_debug.recipes.centerpoint.export import BACKBONE_FILE, VOXEL_ENCODER_FILE

    r = catalog.recipe()
    assert r.graph_files == (VOXEL_ENCODER_FILE, BACKBONE_FILE)
    assert r.head_outputs == HEAD_OUTPUTS
