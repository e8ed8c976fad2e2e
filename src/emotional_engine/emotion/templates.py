"""Second source of training sentences: composed by code from phrase lists (subject x emotion phrase x
context), to complement the embedded model's sentences, which are few and noisy.

This is a different method from the hand-written test set in tests/data: these are combinatorial
templates; the test sentences are free prose written without these lists.
"""

from __future__ import annotations

import random

# phrase tables read best filled, not one phrase a line
# fmt: off
SUBJECTS_3 = ["Mara", "The old fisherman", "Kenji", "The captain", "Her grandmother", "The boy", "Amina",
              "The detective", "Tomás", "The queen", "His sister", "The nurse", "Olu", "The farmer",
              "The young soldier", "Priya", "The merchant", "Little Ana", "The teacher", "Jonah"]
CONTEXTS = ["", "", " when the letter arrived", " at the harbour", " in the middle of the night",
            " as the train pulled in", " on the last day of winter", " in the crowded market",
            " after the meeting", " by the kitchen window", " at the edge of the forest", " that morning",
            " during the storm", " on the way home", " in front of everyone", " beside the fire"]

# Phrases in the third person (past tense); the first-person form swaps the subject for "I".
PHRASES: dict[str, list[str]] = {
    "joy": ["laughed with pure delight", "could not stop smiling", "danced around the room, overjoyed",
            "felt a rush of happiness", "beamed with joy", "hugged everyone, glowing with happiness",
            "was so happy that tears of joy came", "sang out loud, full of cheer",
            "felt wonderful, light and glad", "grinned from ear to ear", "celebrated with a joyful shout",
            "was delighted beyond words", "felt the day was perfect", "laughed until it hurt, happier than ever"],
    "trust": ["knew the old friend would keep the promise", "handed over the keys without a second thought",
              "felt completely safe beside a loyal companion", "relied on the guide to lead the way",
              "believed every word the mentor said", "leaned on a brother who had never let anyone down",
              "trusted the doctor with everything", "felt protected in the arms of a faithful friend",
              "gave the secret to the one person who would never betray it", "was sure the team had their back",
              "put their faith in the captain", "felt secure knowing the family stood together",
              "counted on a neighbour who always kept their word", "followed the loyal dog without doubt"],
    "fear": ["froze in terror", "trembled as footsteps came closer", "was too scared to breathe",
             "felt panic rising in the chest", "hid under the bed, shaking with fear", "screamed in fright",
             "ran, terrified, from the shadow", "felt cold dread creep up the spine", "heart pounded with fear",
             "was afraid the wolves would find them", "whispered a prayer, sick with fear",
             "could not stop shaking after the scream", "dreaded what was behind the door",
             "was frightened by the sudden darkness"],
    "surprise": ["gasped at the unexpected sight", "could not believe the news", "stared, astonished",
                 "was stunned when the door opened to a crowd", "jumped in surprise",
                 "was amazed to see a long-lost friend",
                 "blinked in disbelief at the sudden gift", "was startled by the sudden announcement",
                 "stood speechless at the shocking turn", "never expected to find a letter there",
                 "was taken completely by surprise", "dropped the cup in astonishment",
                 "suddenly realised the stranger was a brother", "was astonished that the river had vanished"],
    "sadness": ["wept quietly", "felt a heavy grief", "sat alone, heartbroken", "missed the friend who had died",
                "cried over the empty chair", "felt lonely and lost", "could not stop the tears",
                "mourned the loss of the old house", "stared at the grave in sorrow", "felt the world had gone grey",
                "was overwhelmed by sadness", "whispered goodbye with a broken heart",
                "felt hopeless and tired of everything", "grieved for the child who never came home"],
    "disgust": ["gagged at the rotten smell", "recoiled from the slimy food", "felt sick at the filth",
                "was disgusted by the liar's behaviour", "spat out the sour, mouldy bread",
                "wrinkled the nose at the stench of the sewer", "found the maggots in the meat revolting",
                "turned away, repulsed", "felt nauseated by the greasy floor", "was sickened by the cruelty",
                "could not bear the foul, vile stink", "felt revulsion at the blood-soaked rags",
                "was grossed out by the rats in the cellar", "found the bribe disgusting"],
    "anger": ["slammed the door in fury", "shouted in rage", "was furious at the betrayal",
              "clenched both fists, seething", "yelled at the cheating merchant", "felt anger boil over",
              "smashed the plate against the wall", "glared with hatred", "was outraged by the injustice",
              "stormed out, livid", "cursed the officials who had lied", "was mad enough to break something",
              "snapped angrily at everyone", "burned with resentment and rage"],
    "anticipation": ["counted the days until the festival", "waited eagerly for the results",
                     "could hardly wait for tomorrow", "kept checking the road for the coach",
                     "looked forward to the journey", "prepared everything for the big day",
                     "watched the horizon, expecting the ships", "planned what to say when they met again",
                     "was eager to open the package", "lay awake, thinking about the trip ahead",
                     "wondered what the next morning would bring", "packed the bags a week early",
                     "waited at the gate for the doors to open", "hoped the answer would come soon"],
    "neutral": ["walked to the station", "put the kettle on", "read the newspaper", "closed the window",
                "wrote the date at the top of the page", "sorted the mail", "parked the car by the fence",
                "bought bread and milk", "took the bus to work", "checked the time", "folded the laundry",
                "opened the ledger", "swept the floor", "turned on the radio", "filled the bucket with water",
                "counted the boxes", "moved the chair to the other room", "went upstairs"],
}
# fmt: on


def compose(per_label: int = 220, seed: int = 1) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, phrases in PHRASES.items():
        seen: set[str] = set()
        tries = 0
        while len(seen) < per_label and tries < per_label * 20:
            tries += 1
            first = rng.random() < 0.35
            subj = "I" if first else rng.choice(SUBJECTS_3)
            phrase = rng.choice(phrases)
            if first:
                phrase = (
                    phrase.replace(" their ", " my ")
                    .replace(" them", " me")
                    .replace("the chest", "my chest")
                    .replace("the spine", "my spine")
                    .replace("the nose", "my nose")
                )
            s = f"{subj} {phrase}{rng.choice(CONTEXTS)}."
            s = s.replace(" heart pounded", "'s heart pounded") if not first else s.replace("I heart", "My heart")
            seen.add(s)
        rows += [{"text": s, "label": label, "source": "template"} for s in sorted(seen)]
    rng.shuffle(rows)
    return rows


# Whole clauses describing a scene or a thought (no subject slot), and lines of dialogue, per label;
# combined with openers / speech tags below.
# phrase tables read best filled, not one phrase a line
# fmt: off
SCENES: dict[str, list[str]] = {
    "joy": ["the house was full of music and laughter", "it was the best birthday anyone could remember",
            "the whole street cheered and sang", "everything felt bright, warm and wonderful",
            "the reunion was pure happiness", "the garden glowed in the sun and the kids giggled",
            "the wedding feast was merry and loud", "the good news spread and every face was smiling"],
    "trust": ["the old friends knew they could count on each other", "no one in the crew doubted the captain",
              "the bond between the sisters was unbreakable", "the promise had been kept, as always",
              "the village relied on the honest miller", "the partners never needed a written contract",
              "the child slept soundly, knowing her parents were near", "the guide had never once led them astray"],
    "fear": ["something was scratching at the door in the dark", "the footsteps behind them grew louder",
             "the ice cracked under their feet", "a scream came from the cellar",
             "the fire spread toward the only exit", "the soldiers were searching every house",
             "the boat was sinking and the shore was far", "the monster's breath was hot on the back of the neck"],
    "surprise": ["the stranger turned out to be the lost heir", "the door opened onto a room no one knew existed",
                 "the quiet boy won the whole tournament", "the letter was from someone everyone thought was dead",
                 "snow fell in the middle of summer", "the empty box was suddenly full of coins",
                 "the villain was the kindly old neighbour", "the party guests leapt out from behind the sofa"],
    "sadness": ["the house was silent since the funeral", "the empty chair at the table said everything",
                "the rain fell on the fresh grave", "the last letter ended with goodbye",
                "the orphans waited for parents who would never come", "the old photographs made everyone cry",
                "the farm was sold and the family scattered", "no one came to the lonely old man's birthday"],
    "disgust": ["the kitchen stank of rotting meat", "maggots crawled through the spilled garbage",
                "the water was brown and reeked of sewage", "the landlord's greed was revolting",
                "flies buzzed over the sour milk", "the toilet was caked with filth",
                "the bread was green with mould", "the bully's cruelty turned every stomach"],
    "anger": ["the workers were furious about the stolen wages", "the insult made everyone's blood boil",
              "the crowd shouted at the corrupt judge", "the broken promise left a burning rage",
              "fists pounded the table", "the door slammed so hard the windows shook",
              "the cheating was the last straw", "the whole town was outraged by the lie"],
    "anticipation": ["the festival was only three days away", "the results would be posted in the morning",
                     "the ships were expected any hour now", "the bags were packed for the long-awaited trip",
                     "everyone waited for the curtain to rise", "the first day of school was coming soon",
                     "the wedding was next week and the plans were nearly done",
                     "the runners waited for the starting gun"],
    "neutral": ["the train left at nine", "the shop was on the corner of the square",
                "the report had three chapters", "the road ran along the river to the next town",
                "the meeting was moved to Tuesday", "the table stood by the window",
                "the bus stopped at the station", "the office closed at five"],
}
OPENERS = ["", "That evening, ", "By noon, ", "In the village, ", "At last, ", "Back home, ", "On the ship, ",
           "Later, ", "Meanwhile, "]
DIALOGUE: dict[str, list[str]] = {
    "joy": ["This is the happiest day of my life!", "We did it, we actually won!", "I love it, thank you so much!",
            "Isn't this wonderful?"],
    "trust": ["I know you'll keep your word.", "I'd trust you with my life.", "You've never let me down.",
              "Take my hand, I've got you."],
    "fear": ["Please, don't hurt me!", "Did you hear that? Something is out there.", "Run, they're coming!",
             "I'm so scared I can't move."],
    "surprise": ["I can't believe it's really you!", "Wait, what? Since when?", "No way, that's impossible!",
                 "You're the one who sent the letter?"],
    "sadness": ["I miss him so much.", "She's gone, and she's never coming back.", "Nothing matters anymore.",
                "I wish I could say goodbye one last time."],
    "disgust": ["Ugh, that smell is revolting!", "Get that filthy thing away from me.",
                "That's disgusting, it's crawling with worms.", "You make me sick."],
    "anger": ["How dare you!", "Get out of my house!", "I'm sick of your lies!", "You ruined everything!"],
    "anticipation": ["Only one more day to go!", "I can't wait to see what's inside.", "When will they get here?",
                     "Tomorrow it finally begins."],
    "neutral": ["The train leaves at six.", "Put the box on the table.", "It's on the second shelf.",
                "The meeting is at three."],
}
SPEECH_TAGS = [" {s} said.", " {s} whispered.", " {s} shouted.", " {s} told them.", " said {s}."]
# fmt: on


def compose_more(per_label: int = 120, seed: int = 2) -> list[dict[str, str]]:
    """Scene clauses with openers and contexts, and dialogue lines with speech tags."""
    rng = random.Random(seed)
    rows = []
    for label in SCENES:
        seen: set[str] = set()
        tries = 0
        while len(seen) < per_label and tries < per_label * 30:
            tries += 1
            if rng.random() < 0.6:
                op = rng.choice(OPENERS)
                clause = rng.choice(SCENES[label])
                s = op + (clause if op else clause[0].upper() + clause[1:]) + rng.choice(CONTEXTS) + "."
            else:
                line = rng.choice(DIALOGUE[label])
                who = rng.choice(SUBJECTS_3 + ["she", "he"])
                tag = rng.choice(SPEECH_TAGS).format(
                    s=who
                    if who in ("she", "he")
                    else who[0].lower() + who[1:]
                    if who.startswith("The ")
                    or who.startswith("His ")
                    or who.startswith("Her ")
                    or who.startswith("Little ")
                    else who
                )
                s = '"' + line[:-1] + (',"' if line.endswith(".") else line[-1] + '"') + tag
            seen.add(s)
        rows += [{"text": s, "label": label, "source": "template"} for s in sorted(seen)]
    rng.shuffle(rows)
    return rows
