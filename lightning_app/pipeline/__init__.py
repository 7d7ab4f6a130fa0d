"""`lightning pipeline`: the chain schema (``chain``), running its stages (``runner``), evaluating each
stage's model (``evaluate``) and the end-of-chain table (``report``)."""
