"""``.nemo`` archives: safe tar I/O, the dist-checkpoint weights, tokenizer artifacts, save/load."""
