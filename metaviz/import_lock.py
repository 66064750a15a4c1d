"""One lock around the imports of scikit-learn (and of umap, which imports most of it).

UMAP's warm-up (metaviz.embed.start_warm_up) imports umap in a background thread while the
dashboard goes on, and a page may meanwhile import a part of scikit-learn itself (the digits
data, a PCA, a LIME fit). Two threads importing parts of one package whose modules import each
other can each hold a module another one needs; Python breaks that cycle by raising a deadlock
error in one thread or by handing it a half-initialised module ("cannot import name ... from
partially initialized module"). Every import of scikit-learn or umap in metaviz takes this lock,
so they run one after another; once the modules are loaded it costs a lock acquisition.
"""
import threading

SCIKIT_LEARN_IMPORTS = threading.RLock()
