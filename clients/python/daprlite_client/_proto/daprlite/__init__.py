# Post-processed by scripts/gen_proto.py for package root daprlite_client._proto
# (own imports rooted there, private descriptor pool). Edit proto/ and rerun.
