"""Operations on a running stack: Fabric tasks, the inventory they read, and the executors
that run commands where each service lives (this machine, a host over SSH, a container).
"""
