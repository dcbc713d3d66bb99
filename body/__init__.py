"""Body model layer: the one place that knows SMPL.

Asset sets, the smplx-backed body model, joint tables, geometry (camera, rotations, Procrustes),
the mesh hierarchy and a headless z-buffer rasteriser.
"""
