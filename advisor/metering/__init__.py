"""What a run cost: time, FLOPs, energy, emissions and memory, each with its provenance.

- ``cost``: the meter around a run -> :class:`advisor.types.Cost`;
- ``flops``: analytic FLOPs of an encoder's forward and backward passes;
- ``energy``: codecarbon readers and grid carbon intensities;
- ``devices``: the GPUs a process uses, precision "auto", the memory sampler, peak RSS;
- ``regions``: cloud regions and their grid intensities (where the same energy emits less).
"""
