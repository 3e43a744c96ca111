"""From logits to text: distributions, decoding strategies, sampling filters, penalties, loss and the measures that compare outputs."""
