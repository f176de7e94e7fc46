"""What the model computes, drawn: attention maps, positional encodings, training curves, embedding space,
and the CJK font that lets Chinese tokens be drawn (``fonts``). matplotlib is imported by these modules only."""
