"""Geometry: density fields (voxels, blobs, layers, height maps, composites) and scenes."""

from ppl_bmc.geometry.fields import Composite, Field, GaussianBlobs, HeightMap, Layers, Mixture, VoxelGrid
from ppl_bmc.geometry.scene import Scene

__all__ = ["Composite", "Field", "GaussianBlobs", "HeightMap", "Layers", "Mixture", "Scene", "VoxelGrid"]
