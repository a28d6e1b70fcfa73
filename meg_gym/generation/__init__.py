"""The LDM side of MEG: the MEG-Shapes dataset, the embedded model, and ES/UE split generation.

Submodules import diffusers and transformers only when used: ``shapes`` needs numpy alone.
"""
