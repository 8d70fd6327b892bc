"""The compiler's passes, one room each, run in the order `pipeline.pipeline` lists them:
`fold` (BatchNorm, neuron input scales, TCJA gates), `residual` (the MS-ResNet stream), `pooling` (average pools
folded, max-pools as ORs), `partition` (host/chip), `quantize` (Loihi 2 integers). No pass imports a later one."""
