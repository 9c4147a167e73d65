"""Model readers and packers: where a model's weights are and what its
architecture is. :mod:`.raw` (weight files), :mod:`.tflite` (.tflite
flatbuffers; :mod:`.tflite_build` writes them), :mod:`.edgeimpulse` (Edge
Impulse Arduino exports). Each is imported on its own: the TFLite and Edge
Impulse readers need numpy and the ``tflite`` schema package."""
