"""MEG-SplitControl-v0: where to split the denoising between ES and UE, how hard to compress, how much energy to
spend, per request of a session, under a UE battery and a deadline (a constrained MDP).

- :mod:`.live`: the UE side run live (decode, denoise, score), batched.
- :mod:`.quality_table`: the shipped quality table that ``fidelity="table"`` reads.
"""
