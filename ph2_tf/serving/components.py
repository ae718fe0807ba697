"""The rules for which component of a mask is the lesion, by name (no TensorFlow here, so that
recipes can check them on a machine without it).

- `largest`: the component of most pixels;
- `most_confident`: the component of highest mean probability, which keeps the lesion where a
  sticker or dark corner that the model marks less surely is larger
  (`results/component-choice/`).

`ph2_tf.serving.postprocessing` implements both, in NumPy and in TensorFlow ops.
"""

COMPONENT_RULES = ("largest", "most_confident")
