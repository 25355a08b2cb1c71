"""The elastic supernet as torch modules: sliced layers (ops), `ElasticSupernet` (model), a child
copied out as plain layers (export) and the child file that loads without the supernet."""
