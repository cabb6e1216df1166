"""Who is calling: client API keys today; member and staff sessions build on ``Actor``.

Every entry point resolves its caller to an ``Actor`` here, and every audit
entry records the actor's id, role and kind.
"""

from principals.actor import OPERATOR_ACTOR, Actor, ActorKind

__all__ = ["OPERATOR_ACTOR", "Actor", "ActorKind"]
