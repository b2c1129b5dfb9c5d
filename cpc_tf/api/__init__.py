"""The public Python API: :func:`load` a model, then :class:`Embedder` embeds audio.

``cpc_tf.load`` and ``cpc_tf.Embedder`` are these names, re-exported lazily by the
package (``import cpc_tf`` loads neither this module nor TensorFlow). See docs/api.md.
"""

from cpc_tf.api.embedder import Embedder, load

__all__ = ["Embedder", "load"]
