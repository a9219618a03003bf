"""The ladder and its encoders: which rungs exist, where their weights come from, how they load.

- ``ladder``: ladders (configs/ladders/*.yaml), rungs, availability, ``check_ladder``, candidates;
- ``sources``: a model source (built-in, folder, hub id) -> what ``from_pretrained`` gets; unsafe folders refused;
- ``loading``: an encoder with a new classification head (safetensors only by default); parameter counts.
"""
