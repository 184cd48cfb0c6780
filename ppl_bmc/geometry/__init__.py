"""Geometry: density fields (voxels, blobs, layers, height maps, composites), elevation rasters and scenes."""

from ppl_bmc.geometry.blobs import GaussianBlobs
from ppl_bmc.geometry.combine import Composite, Mixture
from ppl_bmc.geometry.composition import Composition
from ppl_bmc.geometry.field import Field
from ppl_bmc.geometry.layers import Layers
from ppl_bmc.geometry.terrain import HeightMap
from ppl_bmc.geometry.dem import Elevation, read_elevation
from ppl_bmc.geometry.voxels import VoxelGrid
from ppl_bmc.geometry.scene import Scene

__all__ = ["Composite", "Composition", "Elevation", "Field", "GaussianBlobs", "HeightMap", "Layers", "Mixture", "Scene", "VoxelGrid",
           "read_elevation"]
